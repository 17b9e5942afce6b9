package cdimport

import "io/fs"

// ReferencedFile exposes referencedFile to the fuzz target.
func ReferencedFile(fsys fs.FS, dir, id string) File { return referencedFile(fsys, dir, id) }
