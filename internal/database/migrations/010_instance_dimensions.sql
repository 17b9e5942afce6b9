-- Rows and Columns of dicom_instance become plain columns the archive writes
-- from the header it has parsed anyway. As generated columns (003) every
-- instance insert parsed its whole DICOM JSON metadata into jsonb twice,
-- which was close to half of PostgreSQL's CPU during a STOW-RS ingest.
-- DROP EXPRESSION keeps the values already computed.
ALTER TABLE dicom_instance
    ALTER COLUMN rows DROP EXPRESSION,
    ALTER COLUMN columns DROP EXPRESSION;
