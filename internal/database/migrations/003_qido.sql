-- QIDO-RS (PS3.18 10.6) support for the DICOM archive's index.

-- Rows and Columns are required return attributes of an instance-level
-- search (PS3.18 Table 6.7.1-2b). They are read from the stored DICOM JSON
-- metadata, so the archive's insert code needs no change; a value that is
-- not a plain integer leaves the column NULL rather than failing the insert.
ALTER TABLE dicom_instance
    ADD COLUMN rows integer GENERATED ALWAYS AS (
        CASE WHEN (metadata::jsonb #>> '{00280010,Value,0}') ~ '^[0-9]{1,9}$'
             THEN (metadata::jsonb #>> '{00280010,Value,0}')::integer END) STORED,
    ADD COLUMN columns integer GENERATED ALWAYS AS (
        CASE WHEN (metadata::jsonb #>> '{00280011,Value,0}') ~ '^[0-9]{1,9}$'
             THEN (metadata::jsonb #>> '{00280011,Value,0}')::integer END) STORED;

-- Wildcard matching (PS3.4 C.2.2.2.4) of PatientID, AccessionNumber and
-- ReferringPhysicianName compiles to LIKE 'prefix%'. The database collation
-- is not C, so a prefix LIKE needs text_pattern_ops indexes; the plain
-- indexes of 002 keep serving equality and ranges.
CREATE INDEX dicom_study_patient_pattern ON dicom_study (patient_id text_pattern_ops);
CREATE INDEX dicom_study_accession_pattern ON dicom_study (accession_number text_pattern_ops);
CREATE INDEX dicom_study_referring_pattern ON dicom_study (referring_norm text_pattern_ops);

-- Searches return studies newest first; an index in that order lets an
-- unfiltered or date-filtered search read one page instead of sorting every
-- study.
CREATE INDEX dicom_study_order ON dicom_study (study_date, study_time, study_uid);

-- Series-level and instance-level searches match SOP Class and Modality
-- within a study or series, served by the indexes of 002; instance-level
-- order within a series is dicom_instance_series.
