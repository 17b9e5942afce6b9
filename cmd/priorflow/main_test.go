package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/cdimport/cdimporttest"
	"github.com/priorflow/priorflow/archive/dicomtest"
	"github.com/priorflow/priorflow/internal/database/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, environ map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr, func(k string) string { return environ[k] })
	code := exitCode(err, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func importCLI(t *testing.T, base string, args ...string) result {
	t.Helper()
	return runCLI(t, nil, append([]string{"import", "--url", base, "--parallel", "2", "--batch-files", "3"}, args...)...)
}

var countLine = regexp.MustCompile(`(?m)^(stored|already present|failed|not DICOM, skipped) +(\d+)$`)

// counts reads the counts of the summary.
func counts(t *testing.T, r result) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range countLine.FindAllStringSubmatch(r.stdout, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	if len(out) != 4 {
		t.Fatalf("summary lacks counts:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	return out
}

func wantCounts(stored, present, failed, skipped int) map[string]int {
	return map[string]int{"stored": stored, "already present": present, "failed": failed, "not DICOM, skipped": skipped}
}

func checkCounts(t *testing.T, r result, want map[string]int) {
	t.Helper()
	if diff := cmp.Diff(want, counts(t, r)); diff != "" {
		t.Errorf("counts (-want +got):\n%s\nstdout:\n%s\nstderr:\n%s", diff, r.stdout, r.stderr)
	}
}

func newStudies(t *testing.T) []*dicomtest.Study {
	t.Helper()
	return []*dicomtest.Study{
		dicomtest.NewStudy(t, dicomtest.WithSeries(2), dicomtest.WithInstancesPerSeries(2)),
		dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2)),
	}
}

func TestImport_FolderStoresEveryDICOMFileAndSkipsTheRest(t *testing.T) {
	t.Parallel()
	base, env := cdimporttest.Server(t)
	m := cdimporttest.WriteFolder(t, newStudies(t)...)
	r := importCLI(t, base, m.Dir)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkCounts(t, r, wantCounts(6, 0, 0, len(cdimporttest.Junk)))
	if got, want := env.BlobCount(t), 6; got != want {
		t.Errorf("%d blobs stored, want %d", got, want)
	}
}

func TestImport_DICOMDIRImportsOnlyReferencedFiles(t *testing.T) {
	t.Parallel()
	base, env := cdimporttest.Server(t)
	cd := cdimporttest.WriteCD(t, newStudies(t)...)
	orphan := dicomtest.NewStudy(t)
	cd.WriteFile(t, "DICOM/ORPHAN01", orphan.Instances()[0].Bytes)

	r := importCLI(t, base, cd.Dir)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The junk is not referenced by the DICOMDIR, so it is not even looked at.
	checkCounts(t, r, wantCounts(6, 0, 0, 0))
	if !strings.Contains(r.stdout, "(DICOMDIR, 6 files)") {
		t.Errorf("summary does not say the DICOMDIR was used:\n%s", r.stdout)
	}
	if got, want := env.BlobCount(t), 6; got != want {
		t.Errorf("%d blobs stored, want %d (the unreferenced file must stay out)", got, want)
	}
}

func TestImport_Zip(t *testing.T) {
	t.Parallel()
	base, env := cdimporttest.Server(t)
	m := cdimporttest.WriteFolder(t, newStudies(t)...)
	r := importCLI(t, base, cdimporttest.Zip(t, m.Dir, ""))
	if r.code != exitOK {
		t.Errorf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkCounts(t, r, wantCounts(6, 0, 0, len(cdimporttest.Junk)))
	if got, want := env.BlobCount(t), 6; got != want {
		t.Errorf("%d blobs stored, want %d", got, want)
	}
}

func TestImport_ReimportSendsNothing(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	cd := cdimporttest.WriteCD(t, newStudies(t)...)
	if r := importCLI(t, base, cd.Dir); r.code != exitOK {
		t.Fatalf("first import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := importCLI(t, base, cd.Dir)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkCounts(t, r, wantCounts(0, 6, 0, 0))
	if strings.Contains(r.stdout, "QIDO-RS") {
		t.Errorf("the server's QIDO-RS was not used:\n%s", r.stdout)
	}
}

func TestImport_CorruptFileIsReportedAndTheRestStored(t *testing.T) {
	t.Parallel()
	base, env := cdimporttest.Server(t)
	m := cdimporttest.WriteFolder(t, newStudies(t)...)
	m.WriteFile(t, "study1/broken.dcm", dicomtest.BrokenTruncated(t))

	r := importCLI(t, base, m.Dir)
	if r.code != exitFailure {
		t.Errorf("exit %d, want 1", r.code)
	}
	checkCounts(t, r, wantCounts(6, 0, 1, len(cdimporttest.Junk)))
	if !regexp.MustCompile(`(?m)^study1/broken\.dcm +.*truncated`).MatchString(r.stdout) {
		t.Errorf("summary lacks the broken file and its reason:\n%s", r.stdout)
	}
	if got, want := env.BlobCount(t), 6; got != want {
		t.Errorf("%d blobs stored, want %d", got, want)
	}
}

func TestImport_ServerRefusalIsAttributedToTheFile(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	st := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-A", "HOSP", "DOE^JANE"))
	first := cdimporttest.WriteFolder(t, st)
	if r := importCLI(t, base, first.Dir); r.code != exitOK {
		t.Fatalf("first import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// An instance of another patient in the stored study: QIDO-RS does not
	// know it, and the archive refuses it (processing failure, 0x0110).
	intruder := dicomtest.NewStudy(t, dicomtest.WithPatient("MRN-B", "HOSP", "ROE^RICHARD"), dicomtest.WithStudyInstanceUID(st.StudyInstanceUID))
	m := cdimporttest.WriteFolder(t, dicomtest.NewStudy(t, dicomtest.WithInstancesPerSeries(2)))
	m.WriteFile(t, "intruder.dcm", intruder.Instances()[0].Bytes)

	r := importCLI(t, base, m.Dir)
	if r.code != exitFailure {
		t.Errorf("exit %d, want 1", r.code)
	}
	checkCounts(t, r, wantCounts(2, 0, 1, len(cdimporttest.Junk)))
	if !regexp.MustCompile(`(?m)^intruder\.dcm +.*\(0x0110\)$`).MatchString(r.stdout) {
		t.Errorf("summary lacks the refused file with reason 0x0110:\n%s", r.stdout)
	}
}

// A different object under a SOP Instance UID the archive holds counts as
// present: QIDO-RS matches by UID only.
func TestImport_SameUIDDifferentObjectCountsAsPresent(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	st := dicomtest.NewStudy(t)
	if r := importCLI(t, base, cdimporttest.WriteFolder(t, st).Dir); r.code != exitOK {
		t.Fatalf("first import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	in := st.Instances()[0]
	ds, err := dicom.Parse(bytes.NewReader(in.Bytes), int64(len(in.Bytes)), nil)
	if err != nil {
		t.Fatal(err)
	}
	changed, err := dicomtest.Encode(dicomtest.Edit(ds, dicomtest.Set(tag.StudyDescription, "changed")))
	if err != nil {
		t.Fatal(err)
	}
	m := &cdimporttest.Media{Dir: t.TempDir()}
	m.WriteFile(t, "changed.dcm", changed)
	r := importCLI(t, base, m.Dir)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0", r.code)
	}
	checkCounts(t, r, wantCounts(0, 1, 0, 0))
}

func TestImport_ProgressIsPlainLinesWhenStderrIsNoTerminal(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	m := cdimporttest.WriteFolder(t, newStudies(t)[1])
	r := importCLI(t, base, "--progress-interval", "10ms", m.Dir)
	if r.code != exitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if want := "import: done: 6/6 files"; !strings.HasPrefix(last, want) {
		t.Errorf("last progress line %q, want prefix %q", last, want)
	}
	if !strings.Contains(last, "stored 2, present 0, failed 0, not DICOM 4") {
		t.Errorf("last progress line %q lacks the counts", last)
	}
	if strings.ContainsAny(r.stderr, "\r\x1b") {
		t.Errorf("progress holds terminal control characters: %q", r.stderr)
	}
}

func TestRun_ExitStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		want       int
		wantStderr []string
	}{
		{"no command", nil, nil, exitUsage, []string{"Usage:"}},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`}},
		{"version", nil, []string{"version"}, exitOK, nil},
		{"help", nil, []string{"help"}, exitOK, nil},
		{"help import", nil, []string{"help", "import"}, exitOK, nil},
		{"import without PATH", nil, []string{"import"}, exitUsage, []string{"PATH is missing"}},
		{"import reports every config problem", map[string]string{"PRIORFLOW_URL": "ftp://x"},
			[]string{"import", "--parallel", "0", filepath.Join(dir, "nope")}, exitUsage,
			[]string{"PRIORFLOW_URL", "--parallel 0", "PATH:"}},
		{"import of a file that is no media", nil, []string{"import", notes}, exitUsage, []string{"not a folder, a DICOMDIR or a .zip"}},
		{"import of two paths", nil, []string{"import", dir, dir}, exitUsage, []string{"one PATH"}},
		{"server unreachable", nil, []string{"import", "--url", "http://127.0.0.1:1", cdimporttest.WriteFolder(t, dicomtest.NewStudy(t)).Dir}, exitFailure, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.env, tc.args...)
			if r.code != tc.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, tc.want, r.stdout, r.stderr)
			}
			for _, s := range tc.wantStderr {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

func TestRun_FlagsMayFollowPath(t *testing.T) {
	t.Parallel()
	base, _ := cdimporttest.Server(t)
	m := cdimporttest.WriteFolder(t, dicomtest.NewStudy(t))
	r := runCLI(t, map[string]string{"PRIORFLOW_URL": "http://127.0.0.1:1"}, "import", m.Dir, "--url", base)
	if r.code != exitOK {
		t.Errorf("exit %d, want 0 (--url after PATH overrides PRIORFLOW_URL)\n%s%s", r.code, r.stdout, r.stderr)
	}
}
