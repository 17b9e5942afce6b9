-- The large text values (resource bodies, their history, the DICOM JSON of
-- every instance) are compressed with lz4 instead of pglz when this server
-- has it. pglz_compress was the first PostgreSQL function in a profile of a
-- STOW-RS ingest (8 % of PostgreSQL's CPU); lz4 compresses several times
-- faster for a little less compression. Values already stored stay as they
-- are and read as before.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE resource ALTER COLUMN body SET COMPRESSION lz4;
        ALTER TABLE resource_history ALTER COLUMN body SET COMPRESSION lz4;
        ALTER TABLE dicom_instance ALTER COLUMN metadata SET COMPRESSION lz4;
    END IF;
END
$$;

-- A resource change is published as the bytes the store wrote. As jsonb,
-- PostgreSQL parsed every changed resource on insert (a whole ImagingStudy
-- for each study stored) and printed it again, reordered, for the relay.
ALTER TABLE resource_change_outbox ALTER COLUMN payload TYPE text;
