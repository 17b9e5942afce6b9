package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/priorflow/priorflow/internal/tlsfiles"
	"github.com/priorflow/priorflow/triggers/mllp"
)

// runHL7 is `priorflow hl7 send [-addr HOST:PORT] FILE`: it sends one HL7 v2
// message over MLLP (HL7 v2.5.1 appendix C) and prints the acknowledgement.
func runHL7(ctx context.Context, e *env, args []string) error {
	const usage = "Usage: priorflow hl7 send [-addr HOST:PORT] [-timeout D] [-tls-ca FILE] [-tls-cert FILE -tls-key FILE] MESSAGE.hl7"
	if len(args) == 0 || args[0] != "send" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintln(e.stdout, usage)
			return flag.ErrHelp
		}
		return usagef("%s", usage)
	}
	fs := flag.NewFlagSet("hl7 send", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	def := e.getenv("PRIORFLOW_MLLP_ADDR")
	if def == "" || def[0] == ':' {
		def = "127.0.0.1" + def
		if def == "127.0.0.1" {
			def = "127.0.0.1:2575"
		}
	}
	addr := fs.String("addr", def, "MLLP address of the api (PRIORFLOW_MLLP_ADDR)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the acknowledgement")
	tlsCA := fs.String("tls-ca", "", "send over TLS, verifying the server with the CA certificates in this PEM file")
	tlsCert := fs.String("tls-cert", "", "send over TLS with this client certificate (PEM), for a server requiring mutual TLS")
	tlsKey := fs.String("tls-key", "", "the private key (PEM) of -tls-cert")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if fs.NArg() != 1 {
		return usagef("hl7 send takes one MESSAGE.hl7")
	}
	msg, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("hl7 send: %w", err)
	}
	// Segments end with CR (HL7 v2.5.1 section 2.5.1); files edited on
	// Unix often end them with LF.
	msg = bytes.TrimRight(bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\r")), []byte("\n"), []byte("\r")), "\r")
	var opts []mllp.DialOption
	if *tlsCA != "" || *tlsCert != "" || *tlsKey != "" {
		cfg, err := tlsfiles.Client(*tlsCert, *tlsKey, *tlsCA)
		if err != nil {
			return fmt.Errorf("hl7 send: %w", err)
		}
		opts = append(opts, mllp.WithTLS(cfg))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := mllp.Dial(ctx, *addr, opts...)
	if err != nil {
		return fmt.Errorf("hl7 send: %w", err)
	}
	defer c.Close()
	ack, err := c.Send(ctx, append(msg, '\r'))
	if err != nil {
		return fmt.Errorf("hl7 send: %w", err)
	}
	fmt.Fprintln(e.stdout, string(bytes.ReplaceAll(bytes.TrimRight(ack, "\r"), []byte("\r"), []byte("\n"))))
	return nil
}
