package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/suyashkumar/dicom"
	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/dimse"
	"github.com/priorflow/priorflow/search"
	"github.com/priorflow/priorflow/search/dimsesource"
)

const sourcesUsage = `Usage: priorflow sources check [-config FILE] [-timeout D] [NAME...]

Asks each configured source (or the named ones) whether Priorflow can
search and retrieve there, with the credentials and AE titles of the
config, and prints one line per source:

  dicomweb   a QIDO-RS study query that matches no patient
  fhir,      the CapabilityStatement (GET [base]/metadata)
  priorflow
  dimse      an association proposing Verification and Study Root FIND and
             GET, a C-ECHO, and a C-FIND that matches no patient: a PACS
             that does not know Priorflow's AE title often accepts the
             association and refuses only the query

The queries name no real patient. Exit status 1 when a source fails.
`

// checkPatientID is the PatientID of the checks' queries: one no site
// gives, so that a check reads no patient's data.
const checkPatientID = "PRIORFLOW-CHECK-NO-SUCH-PATIENT"

// runSources is `priorflow sources check`.
func runSources(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(e.stdout, sourcesUsage)
			return flag.ErrHelp
		}
		return usagef("usage: priorflow sources check [-config FILE] [NAME...]")
	}
	fs := flag.NewFlagSet("sources check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfgPath := fs.String("config", e.getenv("PRIORFLOW_CONFIG"), "config file with the sources (PRIORFLOW_CONFIG)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of each source's check")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if *cfgPath == "" {
		return usagef("no config file: pass -config or set PRIORFLOW_CONFIG")
	}
	cfgs, err := search.LoadSources(*cfgPath)
	if err != nil {
		return err
	}
	if names := fs.Args(); len(names) > 0 {
		for _, n := range names {
			if !slices.ContainsFunc(cfgs, func(c *search.SourceConfig) bool { return c.Name == n }) {
				return usagef("no source %q in %s", n, *cfgPath)
			}
		}
		cfgs = slices.DeleteFunc(cfgs, func(c *search.SourceConfig) bool { return !slices.Contains(names, c.Name) })
	}
	if len(cfgs) == 0 {
		return fmt.Errorf("%s has no sources", *cfgPath)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	failed := 0
	for _, c := range cfgs {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		start := time.Now()
		what, err := checkSource(cctx, c)
		cancel()
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			failed++
			fmt.Fprintf(tw, "%s\t%s\tFAILED\t%v (%s)\n", c.Name, c.Kind, err, took)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\tok\t%s (%s)\n", c.Name, c.Kind, what, took)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		fmt.Fprintf(e.stdout, "%d of %d sources failed\n", failed, len(cfgs))
		return errReported
	}
	return nil
}

// checkSource checks one source and says what answered.
func checkSource(ctx context.Context, c *search.SourceConfig) (string, error) {
	if c.Kind == search.KindDIMSE {
		return checkDIMSE(ctx, c)
	}
	client, err := search.NewHTTPClient(c)
	if err != nil {
		return "", err
	}
	if c.Kind == search.KindDICOMweb {
		if _, err := search.Get(ctx, client, c.URL+"/studies?limit=1&PatientID="+checkPatientID, "application/dicom+json"); err != nil {
			return "", err
		}
		return "QIDO-RS answered", nil
	}
	body, err := search.Get(ctx, client, c.URL+"/metadata", "application/fhir+json")
	if err != nil {
		return "", err
	}
	var cs struct {
		ResourceType string `json:"resourceType"`
		FHIRVersion  string `json:"fhirVersion"`
	}
	if err := json.Unmarshal(body, &cs); err != nil || cs.ResourceType != "CapabilityStatement" {
		return "", fmt.Errorf("GET %s/metadata: %w: not a CapabilityStatement", c.URL, search.ErrBadResponse)
	}
	return "CapabilityStatement, FHIR " + cs.FHIRVersion, nil
}

// checkDIMSE negotiates what a search and a retrieval need, and uses it.
func checkDIMSE(ctx context.Context, c *search.SourceConfig) (string, error) {
	ts := []string{dimse.ExplicitVRLittleEndian, dimse.ImplicitVRLittleEndian}
	model, op := dimse.StudyRootGet, "GET"
	if c.RetrieveMethod == search.RetrieveCMove {
		model, op = dimse.StudyRootMove, "MOVE"
	}
	pcs := []dimse.PresentationContext{
		{ID: 1, AbstractSyntax: dimse.Verification, TransferSyntaxes: ts},
		{ID: 3, AbstractSyntax: dimse.StudyRootFind, TransferSyntaxes: ts},
		{ID: 5, AbstractSyntax: model, TransferSyntaxes: ts},
	}
	client, err := dimsesource.NewClient(c)
	if err != nil {
		return "", err
	}
	a, err := dimse.Associate(ctx, client.Addr, client.Config, pcs)
	if err != nil {
		return "", err
	}
	var missing []string
	for _, pc := range pcs[1:] {
		if !pc.Accepted {
			missing = append(missing, map[string]string{dimse.StudyRootFind: "Study Root FIND", model: "Study Root " + op}[pc.AbstractSyntax])
		}
	}
	if len(missing) > 0 {
		a.Abort()
		return "", fmt.Errorf("%s not accepted (%s as %s)", strings.Join(missing, " and "), c.CalledAETitle, c.CallingAETitle)
	}
	if pcs[0].Accepted {
		if err := a.Echo(); err != nil {
			a.Abort()
			return "", err
		}
	}
	q := dimse.Identifier{{Tag: tag.QueryRetrieveLevel, VR: "CS", Value: "STUDY"}, {Tag: tag.PatientID, VR: "LO", Value: checkPatientID},
		{Tag: tag.StudyInstanceUID, VR: "UI"}}
	if err := a.Find(dimse.StudyRootFind, q, func(dicom.Dataset) error { return nil }); err != nil {
		a.Abort()
		var ab *dimse.AbortedError
		var se *dimse.StatusError
		if errors.As(err, &ab) || errors.As(err, &se) {
			return "", fmt.Errorf("%w (does the PACS know %s at this address and allow it C-FIND and C-%s?)", err, c.CallingAETitle, op)
		}
		return "", err
	}
	_ = a.Release()
	echo := "C-ECHO, "
	if !pcs[0].Accepted {
		echo = ""
	}
	return echo + "C-FIND; Study Root FIND and " + op + " accepted", nil
}
