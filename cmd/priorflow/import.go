package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/priorflow/priorflow/archive/cdimport"
)

// importConfig is the configuration of priorflow import: flags, each
// defaulting to its environment variable where it has one.
type importConfig struct {
	URL        string // Priorflow API base URL; DICOMweb is at URL/dicomweb
	TokenFile  string // an access token for the API, when it asks for one
	Parallel   int
	BatchFiles int
	BatchMiB   int64
	Interval   time.Duration // between progress lines when stderr is no terminal
	Path       string
}

const importUsage = `Usage: priorflow import [flags] PATH

Imports DICOM files into Priorflow over DICOMweb, in place of a CD import
station. PATH is a folder, a CD (a folder holding a DICOMDIR, or the DICOMDIR
itself: only the files it references are imported) or a .zip file. Files that
are not DICOM (README, autorun.inf, viewers) are skipped; instances the
archive already holds are not sent again. Progress goes to stderr, the summary
to stdout.

Exit status: 0 when every DICOM file was stored or already present, 1 when
any failed, 2 for usage errors.

Flags:
`

func loadImportConfig(args []string, getenv func(string) string, out io.Writer) (*importConfig, error) {
	c := &importConfig{}
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, importUsage)
		fs.PrintDefaults()
	}
	def := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&c.URL, "url", def("PRIORFLOW_URL", "http://localhost:8080"), "base URL of the Priorflow API (PRIORFLOW_URL); DICOMweb is at <url>/dicomweb")
	fs.StringVar(&c.TokenFile, "token-file", def("PRIORFLOW_TOKEN_FILE", ""), "file holding an access token with scope system/ImagingStudy.rscu (PRIORFLOW_TOKEN_FILE); make run writes one to data/dev-token")
	fs.IntVar(&c.Parallel, "parallel", 4, "files read and requests sent at once")
	fs.IntVar(&c.BatchFiles, "batch-files", 50, "most files in one STOW-RS request")
	fs.Int64Var(&c.BatchMiB, "batch-mib", 64, "most MiB in one STOW-RS request (a larger file goes alone)")
	fs.DurationVar(&c.Interval, "progress-interval", 5*time.Second, "time between progress lines when stderr is not a terminal")
	// Flags may follow PATH: parse again after each argument.
	var paths []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err}
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(paths) {
	case 0:
	case 1:
		c.Path = paths[0]
	default:
		return nil, usagef("import takes one PATH, got %d", len(paths))
	}
	c.URL = strings.TrimSuffix(c.URL, "/")
	if err := c.Validate(); err != nil {
		return nil, &usageError{err}
	}
	return c, nil
}

// Validate reports every problem at once.
func (c *importConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--url (PRIORFLOW_URL) %q must be an absolute http(s) URL", c.URL))
	}
	if c.Parallel < 1 || c.Parallel > 64 {
		errs = append(errs, fmt.Errorf("--parallel %d must be between 1 and 64", c.Parallel))
	}
	if c.BatchFiles < 1 {
		errs = append(errs, fmt.Errorf("--batch-files %d must be at least 1", c.BatchFiles))
	}
	if c.BatchMiB < 1 {
		errs = append(errs, fmt.Errorf("--batch-mib %d must be at least 1", c.BatchMiB))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--progress-interval %v must be positive", c.Interval))
	}
	if c.Path == "" {
		errs = append(errs, errors.New("PATH is missing: give a folder, a DICOMDIR or a .zip file"))
	} else if _, err := os.Stat(c.Path); err != nil {
		errs = append(errs, fmt.Errorf("PATH: %w", err))
	}
	return errors.Join(errs...)
}

func runImport(ctx context.Context, e *env, args []string) error {
	cfg, err := loadImportConfig(args, e.getenv, e.stderr)
	if err != nil {
		return err
	}
	src, err := cdimport.Open(cfg.Path)
	if errors.Is(err, cdimport.ErrUnsupportedSource) {
		return &usageError{err}
	}
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer src.Close()

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Parallel
	var rt http.RoundTripper = tr
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return &usageError{fmt.Errorf("--token-file: %w", err)}
		}
		rt = bearer{token: strings.TrimSpace(string(b)), next: tr}
	}
	client, err := cdimport.NewClient(cfg.URL+"/dicomweb", &http.Client{Transport: rt})
	if err != nil {
		return &usageError{err}
	}
	imp, err := cdimport.NewImporter(client, cdimport.Config{
		Parallel:   cfg.Parallel,
		BatchFiles: cfg.BatchFiles,
		BatchBytes: cfg.BatchMiB << 20,
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}

	p := newProgressPrinter(e.stderr, cfg.Interval, imp.Progress)
	stopProgress := p.start()
	rep, err := imp.Import(ctx, src)
	stopProgress()

	printSummary(e.stdout, src, cfg.URL, rep)
	switch {
	case err != nil:
		return fmt.Errorf("import interrupted: %w", err)
	case len(rep.Failures()) > 0:
		return errReported
	}
	return nil
}

// printSummary writes the failed files, the notes and the counts.
func printSummary(w io.Writer, src *cdimport.Source, base string, rep *cdimport.Report) {
	what := src.Kind.String()
	if src.Zip {
		what = "zip, " + what
	}
	fmt.Fprintf(w, "Imported %s (%s, %d files) into %s\n", src.Path, what, len(rep.Outcomes), base)
	if failures := rep.Failures(); len(failures) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "FAILED FILE\tREASON")
		for _, f := range failures {
			fmt.Fprintf(tw, "%s\t%s\n", f.Path, f.Reason)
		}
		tw.Flush()
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.Notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
	fmt.Fprintln(w)
	for _, row := range []struct {
		label string
		n     int
	}{
		{"stored", rep.Count(cdimport.Stored)},
		{"already present", rep.Count(cdimport.AlreadyPresent)},
		{"failed", rep.Count(cdimport.Failed) + rep.Count(cdimport.Pending)},
		{"not DICOM, skipped", rep.Count(cdimport.NotDICOM)},
	} {
		fmt.Fprintf(w, "%-19s %7d\n", row.label, row.n)
	}
}

// bearer sends an access token with every request to the API.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
