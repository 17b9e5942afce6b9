package cdimport

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// MediaStorageDirectoryStorage is the SOP Class UID of a DICOMDIR (PS3.4
// Annex I, PS3.10 8.6).
const MediaStorageDirectoryStorage = "1.2.840.10008.1.3.10"

// ErrNotDICOMDIR is returned (wrapped) by ReferencedFileIDs for a file that is
// not a readable DICOMDIR.
var ErrNotDICOMDIR = errors.New("not a DICOMDIR")

func readDICOMDIRFile(fsys fs.FS, name string) ([]string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return ReferencedFileIDs(f, fi.Size())
}

// ReferencedFileIDs reads a DICOMDIR of size bytes and returns the Referenced
// File ID (0004,1500) of every directory record in use, each as a
// slash-separated path relative to the DICOMDIR's folder (PS3.3 F.3.2.2: the
// values of the CS attribute are the path's components), in record order and
// without duplicates. Records whose Record In-use Flag (0004,1410) is 0000H
// are inactive and left out.
func ReferencedFileIDs(r io.Reader, size int64) (ids []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			ids, err = nil, fmt.Errorf("cdimport.ReferencedFileIDs: %w: panic in DICOM parser: %v", ErrNotDICOMDIR, p)
		}
	}()
	ds, err := dicomheader.ParseDataset(r, size)
	if err != nil {
		return nil, fmt.Errorf("cdimport.ReferencedFileIDs: %w: %v", ErrNotDICOMDIR, err)
	}
	if class := firstString(ds, tag.MediaStorageSOPClassUID); class != MediaStorageDirectoryStorage {
		return nil, fmt.Errorf("cdimport.ReferencedFileIDs: %w: Media Storage SOP Class UID is %q", ErrNotDICOMDIR, class)
	}
	seq, err := ds.FindElementByTag(tag.DirectoryRecordSequence)
	if err != nil || seq.Value.ValueType() != dicom.Sequences {
		return nil, fmt.Errorf("cdimport.ReferencedFileIDs: %w: no Directory Record Sequence", ErrNotDICOMDIR)
	}
	seen := map[string]bool{}
	for _, item := range seq.Value.GetValue().([]*dicom.SequenceItemValue) {
		rec := dicom.Dataset{Elements: item.GetValue().([]*dicom.Element)}
		if inUse, err := rec.FindElementByTag(tag.RecordInUseFlag); err == nil && inUse.Value.ValueType() == dicom.Ints {
			if v := inUse.Value.GetValue().([]int); len(v) > 0 && v[0] == 0 {
				continue
			}
		}
		e, err := rec.FindElementByTag(tag.ReferencedFileID)
		if err != nil || e.Value.ValueType() != dicom.Strings {
			continue
		}
		var comps []string
		for _, c := range e.Value.GetValue().([]string) {
			if c = strings.Trim(c, " \x00"); c != "" {
				comps = append(comps, c)
			}
		}
		id := strings.Join(comps, "/")
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

func firstString(ds dicom.Dataset, t tag.Tag) string {
	e, err := ds.FindElementByTag(t)
	if err != nil || e.Value.ValueType() != dicom.Strings {
		return ""
	}
	vs := e.Value.GetValue().([]string)
	if len(vs) == 0 {
		return ""
	}
	return strings.Trim(vs[0], " \x00")
}
