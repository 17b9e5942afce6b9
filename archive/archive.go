package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"gocloud.dev/blob"
	"google.golang.org/protobuf/proto"

	"github.com/priorflow/priorflow/fhir"

	"github.com/priorflow/priorflow/archive/dicomheader"
	"github.com/priorflow/priorflow/archive/dicomjson"
	"github.com/priorflow/priorflow/fhir/postgres"
)

// Errors an object can be refused with; the DICOMweb layer maps them to
// PS3.18 failure reasons.
var (
	// ErrInvalidObject: not a DICOM object the archive can key (0xC000s).
	ErrInvalidObject = errors.New("invalid DICOM object")
	// ErrConflict: another object is already stored under this SOP Instance
	// UID (0xA770 "Duplicate SOP Instance" class, here a conflict).
	ErrConflict = errors.New("a different object is stored under this SOP Instance UID")
	// ErrPatientMismatch: the study is already filed under another patient.
	// Never merged: patient safety comes first.
	ErrPatientMismatch = errors.New("the study is already stored for a different patient")
	// ErrNoPatientID: an object without PatientID cannot be attached to a
	// patient safely.
	ErrNoPatientID = errors.New("the object has no PatientID")
	// ErrStudyMismatch: STOW to /studies/{uid} of an object of another study.
	ErrStudyMismatch = errors.New("the object belongs to a different study than the request names")
	// ErrNotFound: no such study, series or instance.
	ErrNotFound = errors.New("not found")
)

// Config tunes the archive.
type Config struct {
	// DICOMwebURL is the absolute DICOMweb root served for this archive; it
	// becomes the address of the local FHIR Endpoint.
	DICOMwebURL string
	// SpoolDir holds objects while they are received; default os.TempDir().
	SpoolDir string
	// DefaultPatientIDSystem is the identifier system of PatientIDs that
	// arrive without IssuerOfPatientID.
	DefaultPatientIDSystem string
	// IssuerSystems maps IssuerOfPatientID values to identifier systems
	// (PRIORFLOW_CONFIG identifiers.authorities); others follow
	// patientid.System: urn:oid:<issuer> for an OID, else
	// urn:priorflow:issuer:<issuer>.
	IssuerSystems map[string]string
	// AccessionSystem is the identifier system of accession numbers.
	AccessionSystem string
	// MaxObjectSize bounds one object.
	MaxObjectSize int64
	// FileRoot, when the bucket is a file:// bucket that writes no metadata
	// sidecars, is its directory (see FileRoot): objects are then renamed
	// from the spool into it instead of copied.
	FileRoot string
	// DefaultCharset is the character set of text that is not UTF-8 once
	// an object's Specific Character Set is applied, mostly objects that
	// declare none but use one (dicomheader.Parser); "" means
	// dicomheader.DefaultCharset (ISO_IR 100).
	DefaultCharset string
}

// Archive stores DICOM objects and keeps their FHIR ImagingStudy index in
// step with them.
type Archive struct {
	store  *postgres.Store
	bucket *blob.Bucket
	log    *slog.Logger
	cfg    Config
	// bufs holds the spool's copy buffers (*[]byte of spoolChunk).
	bufs sync.Pool
	// endpointAt is when the local Endpoint was last seen right (UnixNano).
	endpointAt atomic.Int64
	// sync flushes a file or directory to stable storage (syncPath; tests
	// replace it to provoke a failing disk).
	sync func(path string) error
}

// LocalEndpointID is the id of the FHIR Endpoint that points at this archive.
const LocalEndpointID = "priorflow-local-dicomweb"

// New returns an archive over a FHIR store (whose database also holds the
// archive's tables) and a blob bucket.
func New(store *postgres.Store, bucket *blob.Bucket, log *slog.Logger, cfg Config) (*Archive, error) {
	if store == nil || bucket == nil || log == nil {
		return nil, errors.New("archive: store, bucket and logger are required")
	}
	if cfg.DICOMwebURL == "" {
		return nil, errors.New("archive: DICOMweb URL is required")
	}
	cfg.DICOMwebURL = strings.TrimSuffix(cfg.DICOMwebURL, "/")
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.DefaultPatientIDSystem == "" {
		cfg.DefaultPatientIDSystem = "urn:priorflow:patient-id"
	}
	if cfg.AccessionSystem == "" {
		cfg.AccessionSystem = "urn:priorflow:accession"
	}
	if cfg.MaxObjectSize <= 0 {
		cfg.MaxObjectSize = 4 << 30
	}
	if err := dicomheader.CheckCharset(cfg.DefaultCharset); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &Archive{store: store, bucket: bucket, log: log, cfg: cfg, sync: syncPath}
	store.OnDelete("ImagingStudy", a.onImagingStudyDelete)
	return a, nil
}

// Config returns the archive's effective configuration.
func (a *Archive) Config() Config { return a.cfg }

// Object is one DICOM object received into the spool, hashed and parsed,
// waiting to be stored. Remove it when done.
type Object struct {
	Path   string
	Size   int64
	SHA256 string
	Header *dicomheader.Header
	// Err is set when the object could not be read or parsed; Header is
	// then nil.
	Err error
	// moved is where put renamed the spooled file to, until it is indexed.
	moved string
}

// Remove deletes the spooled file.
func (o *Object) Remove() {
	if o.Path != "" {
		_ = os.Remove(o.Path)
	}
}

// Spool copies one object from r into the spool directory, hashing it, and
// parses its header. The copy bounds memory whatever the object's size. A
// read error of r is returned; an object that is not valid DICOM comes back
// with Err set, so that a multipart request can go on with its next part.
func (a *Archive) Spool(r io.Reader) (*Object, error) {
	f, err := os.CreateTemp(a.cfg.SpoolDir, "stow-*.dcm")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	o := &Object{Path: f.Name()}
	h := sha256.New()
	defer f.Close()
	bp, _ := a.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, spoolChunk)
		bp = &b
	}
	defer a.bufs.Put(bp)
	buf := *bp
	n, err := copyBuffered(f, h, io.LimitReader(r, a.cfg.MaxObjectSize+1), buf)
	// An object that fit in one chunk is still whole in the buffer, and its
	// header is parsed from there; a larger one is read back through the
	// same descriptor (opening a file costs more than reading a header from
	// the page cache). Reading back in the library's small reads was a
	// tenth of the spool's CPU.
	var src io.Reader = f
	if n <= int64(len(buf)) {
		src = bytes.NewReader(buf[:n])
	} else if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		o.Remove()
		return nil, fmt.Errorf("spool: %w", err)
	}
	o.Size, o.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	if n > a.cfg.MaxObjectSize {
		o.Err = fmt.Errorf("%w: larger than %d bytes", ErrInvalidObject, a.cfg.MaxObjectSize)
		return o, nil
	}
	hdr, err := dicomheader.Parser{DefaultCharset: a.cfg.DefaultCharset}.Parse(src, n)
	if err == nil {
		err = hdr.CheckPatientIdentity()
	}
	if err != nil {
		o.Err = fmt.Errorf("%w: %v", ErrInvalidObject, err)
		return o, nil
	}
	o.Header = hdr
	return o, nil
}

// spoolChunk is the size of the spool's writes. Multipart readers hand out
// a few KB at a time; gathering them into large writes saves most of the
// system calls of a transfer.
const spoolChunk = 256 << 10

// copyBuffered copies r into f and h in pieces of len(buf). When it returns
// no more than len(buf), buf holds all that was copied.
func copyBuffered(f io.Writer, h io.Writer, r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		// Not io.ReadFull: it would turn a source's own io.ErrUnexpectedEOF
		// (a part cut short) into a clean end.
		m := 0
		var err error
		for m < len(buf) && err == nil {
			var k int
			k, err = r.Read(buf[m:])
			m += k
		}
		if m > 0 {
			h.Write(buf[:m]) // a hash.Hash never fails
			if _, werr := f.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// blobKey names an object's blob. The key holds only validated UIDs (never
// client-supplied paths) and a prefix of the content hash, so that two
// different objects claiming one SOP Instance UID never overwrite each other.
func blobKey(h *dicomheader.Header, sha string) string {
	return fmt.Sprintf("dicom/%s/%s/%s.%s.dcm", h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID, sha[:16])
}

// relativeBulkURI builds the BulkDataURI of an element, relative to the
// DICOMweb root (PS3.18 F.2.6): stored like this, the served base URL may
// change without rewriting the index.
func relativeBulkURI(h *dicomheader.Header) func(dicomjson.Path) string {
	return func(p dicomjson.Path) string {
		return fmt.Sprintf("studies/%s/series/%s/instances/%s/bulkdata/%s", h.StudyInstanceUID, h.SeriesInstanceUID, h.SOPInstanceUID, p)
	}
}

// Open returns a reader of an instance's original bytes.
func (a *Archive) Open(ctx context.Context, blobKey string) (*blob.Reader, error) {
	r, err := a.bucket.NewReader(ctx, blobKey, nil)
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return r, nil
}

// OpenRange returns a reader of part of an instance's bytes.
func (a *Archive) OpenRange(ctx context.Context, blobKey string, off, length int64) (*blob.Reader, error) {
	r, err := a.bucket.NewRangeReader(ctx, blobKey, off, length, nil)
	if err != nil {
		return nil, fmt.Errorf("open blob range: %w", err)
	}
	return r, nil
}

type protoMessage = proto.Message

func (a *Archive) codec() *fhir.Codec { return a.store.Codec() }

// FileRoot returns the directory of a file:// blob URL whose bucket writes
// no metadata sidecars (metadata=skip): the directory spooled objects may be
// renamed into (Config.FileRoot). It returns "" for any other URL.
func FileRoot(blobURL string) string {
	u, err := url.Parse(blobURL)
	if err != nil || u.Scheme != "file" || u.Host != "" || u.Path == "" || u.Query().Get("metadata") != "skip" {
		return ""
	}
	return filepath.Clean(u.Path)
}
