// Command priorflow is the command-line tool of integration engineers and
// operators. Most commands talk to a running Priorflow API over DICOMweb
// (PS3.18) or MLLP, so they work against a remote server as well as the
// local one; jobs reads the services' database (DATABASE_URL) and is run
// where the services run.
//
// Usage:
//
//	priorflow import [flags] PATH   import a folder, a CD's DICOMDIR or a .zip
//	priorflow rules explain [flags] EVENT.json|MESSAGE.hl7
//	                                show which prefetch rules match an event, and why
//	priorflow hl7 send [flags] MESSAGE.hl7
//	                                send an HL7 v2 message over MLLP, print the ACK
//	priorflow jobs [list|show|follow|retry|cancel] [flags] [ID]
//	                                list, show and follow prefetch jobs; retry or cancel one
//	priorflow sources check [flags] [NAME...]
//	                                check that each remote source answers searches
//	priorflow demo seed [-url ROOT] store the demo network's sample studies in a
//	                                remote site over STOW-RS
//	priorflow version               print the version
//	priorflow help [COMMAND]        explain the commands
//
// Exit status: 0 on success, 1 when a DICOM file could not be imported or
// the command failed, 2 for usage errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// env is what a command gets from its surroundings.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand of priorflow.
type command struct {
	name    string
	args    string // synopsis of the arguments
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands is the table of subcommands, in the order help lists them.
func commands() []command {
	return []command{
		{"import", "[flags] PATH", "import a folder, a CD (DICOMDIR) or a .zip file into Priorflow", runImport},
		{"rules", "explain [flags] EVENT.json|MESSAGE.hl7", "show which prefetch rules an event matches and why", runRules},
		{"hl7", "send [flags] MESSAGE.hl7", "send an HL7 v2 message over MLLP and print the ACK", runHL7},
		{"demo", "seed [-url ROOT]", "store the demo network's sample studies in a remote site (STOW-RS)", runDemo},
		{"jobs", "[list|show|follow|retry|cancel] [flags] [ID]", "list, show and follow prefetch jobs; retry or cancel one (reads DATABASE_URL)", runJobs},
		{"sources", "check [flags] [NAME...]", "check that each remote source answers, with the config's credentials and AE titles", runSources},
		{"version", "", "print the version", runVersion},
		{"help", "[COMMAND]", "explain the commands, or one command", runHelp},
	}
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usageError is a command line that cannot be run; it exits with status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// errReported means the command failed and has said why on its output
// already (import's summary of failed files).
var errReported = errors.New("failed")

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return &usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return nil
	case "-version", "--version":
		return runVersion(ctx, e, nil)
	}
	c, ok := findCommand(args[0])
	if !ok {
		return usagef("unknown command %q (run 'priorflow help')", args[0])
	}
	return c.run(ctx, e, args[1:])
}

// exitCode reports err on w and returns the exit status for it.
func exitCode(err error, w io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errReported):
		return exitFailure
	case errors.As(err, &ue):
		fmt.Fprintln(w, "priorflow:", err)
		return exitUsage
	default:
		fmt.Fprintln(w, "priorflow:", err)
		return exitFailure
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "priorflow is the command-line tool for Priorflow, the DICOM archive with DICOMweb.")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  priorflow %-22s %s\n", c.name+" "+c.args, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'priorflow help COMMAND' for a command's flags.")
}

func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintf(e.stdout, "priorflow %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func runHelp(ctx context.Context, e *env, args []string) error {
	switch len(args) {
	case 0:
		printUsage(e.stdout)
		return nil
	case 1:
		c, ok := findCommand(args[0])
		if !ok {
			return usagef("unknown command %q", args[0])
		}
		if c.name == "help" || c.name == "version" {
			fmt.Fprintf(e.stdout, "Usage: priorflow %s %s\n\n%s.\n", c.name, c.args, c.summary)
			return nil
		}
		// Every other command prints its flags on -h.
		return c.run(ctx, &env{stdout: e.stdout, stderr: e.stdout, getenv: e.getenv}, []string{"-h"})
	}
	return usagef("help takes at most one command")
}
