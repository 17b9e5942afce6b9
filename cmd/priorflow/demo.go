package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/demo"
)

// runDemo is `priorflow demo seed [-url ROOT]`: it stores the sample studies
// of the demo network (internal/demo) in a remote site over STOW-RS.
func runDemo(ctx context.Context, e *env, args []string) error {
	const usage = "Usage: priorflow demo seed [-url DICOMWEB-ROOT]"
	if len(args) == 0 || args[0] != "seed" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintln(e.stdout, usage)
			fmt.Fprintln(e.stdout, "\nStores real sample studies for a few patients, the patient of the sample SIU^S12\n(PATID1234, assigning authority test1) among them, in a DICOMweb server over STOW-RS:\nOrthanc (http://127.0.0.1:8042/dicom-web) or a Priorflow node (http://127.0.0.1:8081/dicomweb).")
			return flag.ErrHelp
		}
		return usagef("%s", usage)
	}
	fs := flag.NewFlagSet("demo seed", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	root := fs.String("url", "http://127.0.0.1:8042/dicom-web", "DICOMweb root of the remote site")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long seeding may take")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if fs.NArg() != 0 {
		return usagef("demo seed takes no arguments")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	seeded, err := demo.Seed(ctx, &http.Client{}, strings.TrimSuffix(*root, "/"), time.Now(), demo.Studies())
	for _, s := range seeded {
		fmt.Fprintf(e.stdout, "seeded %-2s %s  patient %s^^^%s  %d instances  %s\n", s.Study.Modality,
			time.Now().Add(-s.Study.Age).Format("2006-01-02"), s.Study.PatientID, s.Study.Issuer, s.Instances, s.StudyInstanceUID)
	}
	return err
}
