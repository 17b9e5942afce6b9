// Package cdimport imports DICOM media — a folder, a CD or DVD with a DICOMDIR
// (PS3.10 8, PS3.3 Annex F) or a .zip file — into a Priorflow archive over
// DICOMweb (PS3.18): it finds the files (Open), reads each one's header,
// asks the archive with QIDO-RS which instances it already holds, and sends
// the rest with STOW-RS in parallel batches, attributing every failure the
// archive reports to the file it came from (Importer).
package cdimport

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Kind is how a Source found its files.
type Kind int

const (
	// Folder means every file under a directory (or in a zip) was taken.
	Folder Kind = iota
	// DICOMDIR means only the files a DICOMDIR references were taken.
	DICOMDIR
)

func (k Kind) String() string {
	if k == DICOMDIR {
		return "DICOMDIR"
	}
	return "folder"
}

// DICOMDIRName is the name of the DICOMDIR file of a File-set (PS3.10 8.6).
const DICOMDIRName = "DICOMDIR"

// Source is the set of files to import from one path.
type Source struct {
	// Path is the path Open was given.
	Path string
	// Zip tells whether Path is a zip file.
	Zip bool
	// Kind tells whether the files come from a DICOMDIR or a walk.
	Kind Kind
	// Files are the files to import, in a stable order.
	Files []File
	// Warnings are problems that did not stop the import, such as an
	// unreadable DICOMDIR that was replaced by a walk of the folder.
	Warnings []string

	closer io.Closer
}

// File is one file of a Source.
type File struct {
	// Path names the file for people: slash-separated and relative to the
	// Source's root (the folder, the zip, or the DICOMDIR's folder's root).
	Path string
	// Size is the file's size in bytes.
	Size int64
	// Referenced tells that a DICOMDIR references the file, so it must be a
	// DICOM file: not being one is a failure rather than a skip.
	Referenced bool
	// Err is set when the file cannot be imported at all, such as a file a
	// DICOMDIR references that is missing from the media.
	Err error

	fsys fs.FS
	name string // the file's name in fsys
}

// Open opens the file's content.
func (f File) Open() (io.ReadCloser, error) {
	if f.Err != nil {
		return nil, f.Err
	}
	r, err := f.fsys.Open(f.name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Path, err)
	}
	return r, nil
}

// ErrUnsupportedSource is returned (wrapped) by Open for a path that is
// neither a directory, a DICOMDIR nor a zip file.
var ErrUnsupportedSource = errors.New("not a folder, a DICOMDIR or a .zip file")

// ErrMissingReferencedFile is the Err of a File that a DICOMDIR references but
// the media does not hold.
var ErrMissingReferencedFile = errors.New("referenced by the DICOMDIR but missing")

// Open finds the files to import under p: a directory, a DICOMDIR file (its
// folder is the File-set), or a .zip file. When the root of the directory or
// zip holds a DICOMDIR, only the files it references are taken (PS3.10 8.5);
// otherwise every regular file is, except DICOMDIR files. Close the Source
// when done.
func Open(p string) (*Source, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("cdimport.Open: %w", err)
	}
	src := &Source{Path: p}
	var fsys fs.FS
	switch {
	case fi.IsDir():
		fsys = os.DirFS(p)
	case strings.EqualFold(filepath.Base(p), DICOMDIRName):
		src.Path = p
		fsys = os.DirFS(filepath.Dir(p))
	case strings.EqualFold(filepath.Ext(p), ".zip"):
		zr, err := zip.OpenReader(p)
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
			return nil, fmt.Errorf("cdimport.Open: %w", err)
		}
		if errors.Is(err, zip.ErrInsecurePath) {
			// The reader is usable; its fs.FS view leaves out the entries
			// whose names escape the archive.
			src.Warnings = append(src.Warnings, "the zip holds entries with unsafe names; they were ignored")
		}
		src.Zip, src.closer, fsys = true, zr, zr
	default:
		return nil, fmt.Errorf("cdimport.Open %s: %w", p, ErrUnsupportedSource)
	}
	if err := src.discover(fsys); err != nil {
		src.Close()
		return nil, fmt.Errorf("cdimport.Open: %w", err)
	}
	return src, nil
}

// Close releases the Source (the zip file).
func (s *Source) Close() error {
	if s.closer == nil {
		return nil
	}
	err := s.closer.Close()
	s.closer = nil
	return err
}

// discover fills s.Files from the DICOMDIR at the root of fsys, or by walking
// it.
// A root that holds nothing but one folder (a zip of a CD's folder) is looked
// into for the DICOMDIR too.
func (s *Source) discover(fsys fs.FS) error {
	dir := "."
	dd, ok := findName(fsys, dir, DICOMDIRName)
	if !ok {
		if entries, err := fs.ReadDir(fsys, "."); err == nil && len(entries) == 1 && entries[0].IsDir() {
			dir = entries[0].Name()
			dd, ok = findName(fsys, dir, DICOMDIRName)
		}
	}
	if ok {
		ids, err := readDICOMDIRFile(fsys, dd)
		if err == nil {
			s.Kind = DICOMDIR
			for _, id := range ids {
				s.Files = append(s.Files, referencedFile(fsys, dir, id))
			}
			return nil
		}
		s.Warnings = append(s.Warnings, fmt.Sprintf("the DICOMDIR cannot be read (%v); importing every file instead", err))
	}
	return s.walk(fsys)
}

// walk takes every regular file of fsys but DICOMDIR files.
func (s *Source) walk(fsys fs.FS) error {
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			if name == "." {
				return err
			}
			s.Files = append(s.Files, File{Path: name, Err: err, fsys: fsys, name: name})
			return nil
		}
		if !d.Type().IsRegular() || strings.EqualFold(isoName(d.Name()), DICOMDIRName) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			s.Files = append(s.Files, File{Path: name, Err: err, fsys: fsys, name: name})
			return nil
		}
		s.Files = append(s.Files, File{Path: name, Size: fi.Size(), fsys: fsys, name: name})
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	return nil
}

// referencedFile resolves one Referenced File ID of a DICOMDIR, a path
// relative to the DICOMDIR's folder dir (PS3.3 F.3.2.2).
func referencedFile(fsys fs.FS, dir, id string) File {
	f := File{Path: path.Join(dir, id), Referenced: true, fsys: fsys}
	name, ok := resolve(fsys, dir, id)
	if !ok {
		f.Err = ErrMissingReferencedFile
		return f
	}
	f.name, f.Path = name, name
	fi, err := fs.Stat(fsys, name)
	switch {
	case err != nil:
		f.Err = err
	case !fi.Mode().IsRegular():
		f.Err = fmt.Errorf("not a regular file: %w", ErrMissingReferencedFile)
	default:
		f.Size = fi.Size()
	}
	return f
}

// resolve finds the file of a slash-separated Referenced File ID in dir. The
// components are matched exactly first, then without regard to case and to an
// ISO 9660 version suffix (";1"): a CD mounted on Linux often shows lower-case
// names, and File IDs are upper case (PS3.10 8.2, PS3.12).
func resolve(fsys fs.FS, dir, id string) (string, bool) {
	if !fs.ValidPath(id) {
		return "", false
	}
	if name := path.Join(dir, id); fs.ValidPath(name) {
		if fi, err := fs.Stat(fsys, name); err == nil && !fi.IsDir() {
			return name, true
		}
	}
	for _, comp := range strings.Split(id, "/") {
		name, ok := findName(fsys, dir, comp)
		if !ok {
			return "", false
		}
		dir = name
	}
	return dir, true
}

// findName returns the entry of dir whose name is want, matched without
// regard to case and to an ISO 9660 version suffix.
func findName(fsys fs.FS, dir, want string) (string, bool) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return "", false
	}
	if i := slices.IndexFunc(entries, func(e fs.DirEntry) bool { return e.Name() == want }); i >= 0 {
		return path.Join(dir, entries[i].Name()), true
	}
	for _, e := range entries {
		if strings.EqualFold(isoName(e.Name()), want) {
			return path.Join(dir, e.Name()), true
		}
	}
	return "", false
}

// isoName strips an ISO 9660 file version (";1") and the trailing dot of a
// name without extension ("IMG0001." as some drivers show it).
func isoName(name string) string {
	if i := strings.LastIndexByte(name, ';'); i >= 0 {
		name = name[:i]
	}
	return strings.TrimSuffix(name, ".")
}
