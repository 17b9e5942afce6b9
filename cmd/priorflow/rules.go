package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/priorflow/priorflow/internal/patientid"
	"github.com/priorflow/priorflow/triggers"
	"github.com/priorflow/priorflow/triggers/hl7v2"
	"github.com/priorflow/priorflow/triggers/rules"
)

// runRules is `priorflow rules explain [flags] EVENT.json|MESSAGE.hl7`: it
// prints which prefetch rules match an event and why, with no side effects.
func runRules(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "explain" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintln(e.stdout, "Usage: priorflow rules explain [-config FILE] [-now RFC3339] [-tz ZONE] EVENT.json|MESSAGE.hl7")
			return flag.ErrHelp
		}
		return usagef("usage: priorflow rules explain [-config FILE] EVENT.json|MESSAGE.hl7")
	}
	fs := flag.NewFlagSet("rules explain", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	cfgPath := fs.String("config", e.getenv("PRIORFLOW_CONFIG"), "rules file (PRIORFLOW_CONFIG)")
	nowFlag := fs.String("now", "", "evaluate as of this time (RFC 3339); default now")
	tz := fs.String("tz", "Local", "zone of HL7 v2 times sent without an offset")
	charset := fs.String("charset", "", "character set (MSH-18 value, e.g. 8859/1) of an HL7 v2 message that declares none but is not UTF-8")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("rules explain takes one EVENT.json or MESSAGE.hl7")
	}
	if *cfgPath == "" {
		return usagef("no rules file: pass -config or set PRIORFLOW_CONFIG")
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return usagef("-now %q: %v", *nowFlag, err)
		}
		now = t
	}
	cfg, err := rules.LoadFile(*cfgPath)
	if err != nil {
		return err
	}
	ids, err := patientid.Load(*cfgPath)
	if err != nil {
		return err
	}
	tables, err := hl7v2.LoadTables(*cfgPath)
	if err != nil {
		return err
	}
	ev, err := readEvent(fs.Arg(0), *tz, *charset, tables, ids)
	if err != nil {
		return err
	}
	return rules.Explain(e.stdout, cfg, ev, now)
}

// readEvent reads a CareEvent JSON, or maps an HL7 v2 message the way the
// MLLP intake does.
func readEvent(path, tz, charset string, tables *hl7v2.Tables, ids *patientid.Systems) (*triggers.CareEvent, error) {
	if !strings.HasSuffix(strings.ToLower(path), ".hl7") {
		return rules.ReadEventFile(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, usagef("-tz %q: %v", tz, err)
	}
	if err := hl7v2.CheckCharset(charset); err != nil {
		return nil, usagef("-charset: %v", err)
	}
	m, err := hl7v2.Parser{DefaultCharset: charset}.Parse(bytes.TrimSpace(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ev, err := hl7v2.ToCareEvent(m, tables.MapOptions(loc, ids))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ev, nil
}
