// Command dicombench measures Priorflow's DICOM archive beside Orthanc in one
// run, on the same generated files and with the same client code: STOW-RS
// ingest rate (and Orthanc's native POST /instances for reference), QIDO-RS
// studies?PatientID= latency, and WADO-RS whole-study throughput against a
// plain read of the same bytes from disk (docs/performance.md, "DICOM
// archive beside Orthanc"; scripts/bench.sh runs it after the FHIR bench).
//
// It generates the corpus in a temporary directory, starts a fresh
// Priorflow API (its own database, dropped first) and a fresh Orthanc with
// its DICOMweb plugin, both on loopback ports, measures, stops both and
// deletes the temporary data and the database.
//
// Usage:
//
//	dicombench [flags]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/priorflow/priorflow/internal/bench/dicombench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "dicombench:", err)
		os.Exit(1)
	}
}

const (
	subject   = "Priorflow"
	reference = "Orthanc"
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	release, err := claimDatabase(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer release()
	apiBin, err := exec.LookPath(cfg.APIBin)
	if err != nil {
		return fmt.Errorf("the Priorflow API binary: %w (go build -o bin/ ./cmd/api)", err)
	}
	orthancBin, err := exec.LookPath(cfg.OrthancBin)
	if err != nil {
		return fmt.Errorf("Orthanc is not installed: %w (make deps)", err)
	}
	plan := dicombench.Plan{Instances: cfg.Instances, Studies: cfg.Studies, Patients: cfg.Patients,
		LargeStudies: cfg.LargeStudies, LargeInstances: cfg.LargeInstances, Seed: cfg.Seed}
	// The corpus, Priorflow's blobs (and spool), Orthanc's storage, and room.
	need := 3*plan.EstimateBytes() + 2<<30
	free, err := dicombench.CheckSpace(cfg.TempDir, need)
	if err != nil {
		return err
	}
	log.Info("disk space", "dir", cfg.TempDir, "free_gb", free>>30, "needed_gb", float64(need)/(1<<30))

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	tmp, err := os.MkdirTemp(cfg.TempDir, "dicombench-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.Keep {
			log.Info("kept the run's data", "dir", tmp, "database", cfg.DatabaseURL)
			return
		}
		if rerr := os.RemoveAll(tmp); rerr != nil {
			log.Warn("removing the temporary directory", "dir", tmp, "err", rerr)
		}
	}()

	gen, err := dicombench.NewGenerator()
	if err != nil {
		return err
	}
	t0 := time.Now()
	log.Info("generating the corpus", "instances", plan.Instances, "studies", plan.Studies, "patients", plan.Patients, "dir", tmp)
	corpus, err := dicombench.Generate(ctx, gen, filepath.Join(tmp, "corpus"), plan, cfg.GenWorkers, log)
	if err != nil {
		return err
	}
	log.Info("corpus generated", "instances", corpus.Instances(), "mb", corpus.Bytes()>>20, "elapsed", time.Since(t0).Round(time.Second))
	files := corpus.Files()

	client := dicombench.NewClient(max(cfg.Clients, cfg.QIDOClients) * 2)
	res := &dicombench.Results{Subject: subject, Reference: reference, Corpus: corpus, Plan: plan,
		Ingest: map[string]*dicombench.IngestResult{}}
	res.Machine = dicombench.MachineLines()
	res.Settings = []string{
		fmt.Sprintf("ingest: STOW-RS `POST /studies`, %d instances per multipart/related request, %d concurrent clients, the files read from disk per request; the same client code for both servers", cfg.Batch, cfg.Clients),
		fmt.Sprintf("QIDO-RS: `GET /studies?PatientID=<random existing>`, %d requests per server on %d concurrent keep-alive clients, blocks of %d alternating between the servers; match counts checked on %d samples first",
			cfg.QIDORequests, cfg.QIDOClients, cfg.QIDOBlock, cfg.QIDOVerify),
		fmt.Sprintf("WADO-RS: `GET /studies/{uid}`, `Accept: %s`, no compression asked (DisableCompression), one study at a time, %d rounds over the large studies, the server order rotating per round; an untimed first pass checks every study's instance count and bytes",
			`multipart/related; type="application/dicom"; transfer-syntax=*`, cfg.WADORounds),
		"ceiling: the same studies' files read from the corpus directory with read(2) into a 256 KB buffer, in the same rounds (page cache warm, as the servers' files are)",
	}

	// Priorflow, on a fresh database.
	if err := dropDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	defer func() {
		if cfg.Keep {
			return
		}
		// The API is stopped by now (deferred later, so run earlier).
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := dropDatabase(dctx, cfg.DatabaseURL); derr != nil {
			log.Warn("dropping the bench database", "err", derr)
		}
	}()
	pf, err := dicombench.StartPriorflow(ctx, client, dicombench.PriorflowOptions{Bin: apiBin, DatabaseURL: cfg.DatabaseURL,
		DataDir: filepath.Join(tmp, "priorflow")}, log)
	if err != nil {
		return err
	}
	defer pf.Stop(30 * time.Second)
	log.Info("Priorflow started", "url", pf.URL, "pid", pf.Pid())
	db, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("open the bench database: %w", err)
	}
	defer db.Close()
	var pgVersion, autovacuum string
	if err := db.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('autovacuum')`).Scan(&pgVersion, &autovacuum); err != nil {
		return fmt.Errorf("bench database: %w", err)
	}
	res.Machine = append(res.Machine, "PostgreSQL "+pgVersion+", autovacuum "+autovacuum)

	or, err := dicombench.StartOrthanc(ctx, client, orthancBin, filepath.Join(tmp, "orthanc"), log)
	if err != nil {
		return err
	}
	orStopped := false
	defer func() {
		if !orStopped {
			or.Stop(30 * time.Second)
		}
	}()
	log.Info("Orthanc started", "url", or.URL, "pid", or.Pid())
	res.Machine = append(res.Machine, orthancVersion(ctx, or.URL))
	servers := []dicombench.Server{
		{Name: subject, DICOMweb: pf.URL + "/dicomweb"},
		{Name: reference, DICOMweb: or.URL + "/dicom-web"},
	}

	// STOW-RS, Priorflow first. With autovacuum off (as on this machine),
	// ANALYZE runs every 10 s during the ingest and once after it, standing
	// in for autovacuum's analyze; without statistics every plan is made
	// for empty tables.
	for _, s := range servers {
		log.Info("STOW-RS ingest", "server", s.Name, "instances", len(files), "load", dicombench.LoadAvg())
		var stopAnalyze func() error
		if s.Name == subject && autovacuum == "off" {
			stopAnalyze = analyzeEvery(ctx, db, 10*time.Second)
		}
		r, err := client.STOW(ctx, s, files, cfg.Batch, cfg.Clients)
		if stopAnalyze != nil {
			if aerr := stopAnalyze(); aerr != nil && err == nil {
				err = aerr
			}
		}
		if err != nil {
			return err
		}
		res.Ingest[s.Name] = r
		log.Info("STOW-RS ingested", "server", s.Name, "instances_per_s", int(r.PerSecond()), "elapsed", r.Elapsed.Round(100*time.Millisecond), "load", dicombench.LoadAvg())
	}
	if autovacuum == "off" {
		res.Settings = append(res.Settings, "autovacuum is off on this PostgreSQL: the benchmark runs ANALYZE every 10 s during Priorflow's ingest and once after it, standing in for autovacuum")
	}

	log.Info("QIDO-RS", "requests", cfg.QIDORequests, "load", dicombench.LoadAvg())
	qido, err := client.MeasureQIDO(ctx, servers, corpus, dicombench.QIDOOptions{Requests: cfg.QIDORequests, Clients: cfg.QIDOClients,
		Block: cfg.QIDOBlock, MaxTime: cfg.QIDOMaxTime, Verify: cfg.QIDOVerify, Seed: cfg.Seed})
	if err != nil {
		return err
	}
	res.QIDO = qido
	for _, s := range servers {
		log.Info("QIDO-RS measured", "server", s.Name, "n", qido[s.Name].N, "p50", qido[s.Name].P50, "p99", qido[s.Name].P99)
	}

	log.Info("WADO-RS", "studies", len(corpus.Large()), "rounds", cfg.WADORounds, "load", dicombench.LoadAvg())
	if res.WADO, err = client.MeasureWADO(ctx, servers, corpus.Large(), cfg.WADORounds); err != nil {
		return err
	}
	for _, name := range []string{subject, reference, dicombench.Disk} {
		log.Info("WADO-RS measured", "side", name, "mb_per_s", int(res.WADO[name].MBPerSecond()))
	}

	// Orthanc's own upload, on a second fresh Orthanc.
	or.Stop(30 * time.Second)
	orStopped = true
	if err := os.RemoveAll(filepath.Join(tmp, "orthanc", "storage")); err != nil {
		return err
	}
	if cfg.Native {
		on, err := dicombench.StartOrthanc(ctx, client, orthancBin, filepath.Join(tmp, "orthanc-native"), log)
		if err != nil {
			return err
		}
		log.Info("Orthanc POST /instances", "instances", len(files), "load", dicombench.LoadAvg())
		r, err := client.OrthancInstances(ctx, on.URL, files, cfg.Clients)
		on.Stop(30 * time.Second)
		if err != nil {
			return err
		}
		res.Native = r
		res.Settings = append(res.Settings, fmt.Sprintf("Orthanc native: `POST /instances`, one file per request, %d concurrent clients, on a second fresh Orthanc", cfg.Clients))
		log.Info("Orthanc POST /instances done", "instances_per_s", int(r.PerSecond()))
	}
	res.Machine = append(res.Machine, "load average at the end: "+dicombench.LoadAvg())
	sizes, err := storeSizes(ctx, db, filepath.Join(tmp, "priorflow"))
	if err == nil {
		res.Notes = append(res.Notes, sizes)
	}

	var md bytes.Buffer
	res.WriteMarkdown(&md)
	if cfg.Out != "" {
		if err := os.WriteFile(cfg.Out, md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	if cfg.Doc != "" {
		if err := dicombench.UpdateDoc(cfg.Doc, md.Bytes()); err != nil {
			return err
		}
		log.Info("results written", "doc", cfg.Doc)
	}
	_, err = stdout.Write(md.Bytes())
	return err
}

// claimDatabase makes this run the only one using the bench database until
// release is called: two runs at once drop and recreate each other's
// database under their servers, which then fail mid-run (seen: STOW-RS
// answering 409 to every instance). The claim is a session advisory lock
// held on a connection of its own, so a run that dies releases it.
func claimDatabase(ctx context.Context, url string) (release func(), err error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, errors.New("database url cannot be parsed")
	}
	name := cc.Database
	cc.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, "dicombench:"+name).Scan(&ok); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("claim database %s: %w", name, err)
	}
	if !ok {
		conn.Close(context.Background())
		return nil, fmt.Errorf("another dicombench run is using database %s: wait for it, or give this one another -database-url", name)
	}
	return func() { conn.Close(context.Background()) }, nil
}

// dropDatabase drops the bench database (config validation has checked
// that its name contains "bench").
func dropDatabase(ctx context.Context, url string) error {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return errors.New("database url cannot be parsed")
	}
	name := cc.Database
	if !strings.Contains(name, "bench") {
		return fmt.Errorf("refusing to drop database %q", name)
	}
	cc.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// analyzeEvery runs ANALYZE every period until the returned function is
// called; that function runs a last ANALYZE and returns the first error.
func analyzeEvery(ctx context.Context, db *pgxpool.Pool, period time.Duration) func() error {
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-t.C:
				if _, err := db.Exec(ctx, "ANALYZE"); err != nil && ctx.Err() == nil {
					errc <- fmt.Errorf("analyze: %w", err)
					return
				}
			}
		}
	}()
	return func() error {
		cancel()
		err := <-errc
		if _, aerr := db.Exec(context.Background(), "ANALYZE"); aerr != nil && err == nil {
			err = fmt.Errorf("analyze: %w", aerr)
		}
		return err
	}
}

// storeSizes describes what Priorflow stored: database and blob bytes.
func storeSizes(ctx context.Context, db *pgxpool.Pool, dataDir string) (string, error) {
	var dbBytes, studies, instances int64
	if err := db.QueryRow(ctx, `SELECT pg_database_size(current_database()),
		(SELECT count(*) FROM dicom_study), (SELECT count(*) FROM dicom_instance)`).Scan(&dbBytes, &studies, &instances); err != nil {
		return "", err
	}
	var blobBytes int64
	_ = filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				blobBytes += fi.Size()
			}
		}
		return nil
	})
	return fmt.Sprintf("Priorflow after the run: %d studies and %d instances indexed; database %.0f MB, blob store %.0f MB.",
		studies, instances, float64(dbBytes)/1e6, float64(blobBytes)/1e6), nil
}

// orthancVersion describes the Orthanc under test.
func orthancVersion(ctx context.Context, root string) string {
	get := func(path string, v any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, root+path, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(v)
	}
	var sys struct{ Version, DatabaseBackendPlugin string }
	var plugin struct{ Version string }
	if err := get("/system", &sys); err != nil {
		return "Orthanc: version unknown"
	}
	_ = get("/plugins/dicom-web", &plugin)
	return fmt.Sprintf("Orthanc %s (SQLite index, storage on the same disk), DICOMweb plugin %s; default configuration otherwise, as internal/orthanctest", sys.Version, plugin.Version)
}
