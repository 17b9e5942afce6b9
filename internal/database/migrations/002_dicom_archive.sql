-- The local DICOM archive's index. The original Part 10 bytes live in blob
-- storage under blob_key; these tables hold what QIDO-RS matches on and what
-- the ImagingStudy index is rebuilt from. They are written in the same
-- transaction as the ImagingStudy resource.

CREATE TABLE dicom_study (
    study_uid           text PRIMARY KEY,
    patient_id          text        NOT NULL,
    issuer              text        NOT NULL DEFAULT '',
    patient_name        text        NOT NULL DEFAULT '',  -- PN as stored (Alphabetic group)
    patient_name_norm   text        NOT NULL DEFAULT '',  -- folded for case-insensitive matching
    patient_birth_date  text        NOT NULL DEFAULT '',
    patient_sex         text        NOT NULL DEFAULT '',
    study_date          text        NOT NULL DEFAULT '',  -- DA
    study_time          text        NOT NULL DEFAULT '',  -- TM
    timezone_offset     text        NOT NULL DEFAULT '',
    accession_number    text        NOT NULL DEFAULT '',
    study_id            text        NOT NULL DEFAULT '',
    study_description   text        NOT NULL DEFAULT '',
    referring_physician text        NOT NULL DEFAULT '',
    referring_norm      text        NOT NULL DEFAULT '',
    specific_charset    text        NOT NULL DEFAULT '',
    imaging_study_id    text        NOT NULL,  -- the FHIR ImagingStudy id
    patient_fhir_id     text        NOT NULL,  -- the FHIR Patient id
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dicom_study_patient ON dicom_study (patient_id, issuer);
CREATE INDEX dicom_study_accession ON dicom_study (accession_number);
CREATE INDEX dicom_study_date ON dicom_study (study_date);
CREATE INDEX dicom_study_name ON dicom_study (patient_name_norm text_pattern_ops);
CREATE UNIQUE INDEX dicom_study_fhir ON dicom_study (imaging_study_id);

CREATE TABLE dicom_series (
    series_uid         text PRIMARY KEY,
    study_uid          text NOT NULL REFERENCES dicom_study (study_uid) ON DELETE CASCADE,
    modality           text NOT NULL DEFAULT '',
    series_number      integer,
    series_description text NOT NULL DEFAULT '',
    body_part          text NOT NULL DEFAULT '',
    laterality         text NOT NULL DEFAULT '',
    series_date        text NOT NULL DEFAULT '',
    series_time        text NOT NULL DEFAULT ''
);
CREATE INDEX dicom_series_study ON dicom_series (study_uid);
CREATE INDEX dicom_series_modality ON dicom_series (modality, study_uid);

CREATE TABLE dicom_instance (
    sop_uid           text PRIMARY KEY,
    series_uid        text        NOT NULL REFERENCES dicom_series (series_uid) ON DELETE CASCADE,
    study_uid         text        NOT NULL,
    sop_class_uid     text        NOT NULL,
    transfer_syntax   text        NOT NULL,
    instance_number   integer,
    number_of_frames  integer     NOT NULL DEFAULT 0,
    size              bigint      NOT NULL,
    sha256            text        NOT NULL,
    blob_key          text        NOT NULL,
    -- DICOM JSON (PS3.18 F.2) of the header, BulkDataURIs relative to the
    -- DICOMweb root so the served base URL can change.
    metadata          text        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dicom_instance_series ON dicom_instance (series_uid, instance_number);
CREATE INDEX dicom_instance_study ON dicom_instance (study_uid);
CREATE INDEX dicom_instance_class ON dicom_instance (sop_class_uid);
