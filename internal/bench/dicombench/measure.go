package dicombench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/priorflow/priorflow/internal/bench"
)

// QIDOOptions bound the QIDO-RS latency measurement.
type QIDOOptions struct {
	Requests int           // per server
	Clients  int           // concurrent requests
	Block    int           // requests per block; servers alternate block by block
	MaxTime  time.Duration // for all servers together
	Verify   int           // samples whose match count is checked on every server first
	Seed     uint64
}

// MeasureQIDO times QIDO-RS studies?PatientID= for random patients of the
// corpus on every server. Blocks of opt.Block requests alternate between the
// servers (the first server of a block rotates), so that every server sees
// the same machine load; each block runs on opt.Clients workers. Before
// timing, opt.Verify samples are checked on every server: the number of
// studies matched must be the patient's number of studies.
func (c *Client) MeasureQIDO(ctx context.Context, servers []Server, corpus *Corpus, opt QIDOOptions) (map[string]bench.Stats, error) {
	if opt.Requests < 1 || opt.Clients < 1 || opt.Block < 1 || opt.MaxTime <= 0 {
		return nil, errors.New("dicombench.MeasureQIDO: requests, clients, block and max time must be positive")
	}
	counts := corpus.PatientStudies()
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	rng := rand.New(rand.NewPCG(opt.Seed, 0x7169646f))
	samples := make([]string, opt.Requests)
	for i := range samples {
		samples[i] = ids[rng.IntN(len(ids))]
	}
	var buf bytes.Buffer
	for _, s := range servers {
		for _, id := range samples[:min(opt.Verify, len(samples))] {
			n, err := c.SearchStudiesByPatient(ctx, s, id, &buf)
			if err != nil {
				return nil, err
			}
			if n != counts[id] {
				return nil, fmt.Errorf("%s QIDO-RS PatientID=%s matched %d studies, want %d", s.Name, id, n, counts[id])
			}
		}
	}
	lat := make(map[string][]time.Duration, len(servers))
	wall := make(map[string]time.Duration, len(servers))
	deadline := time.Now().Add(opt.MaxTime)
	for b := 0; b*opt.Block < len(samples) && time.Now().Before(deadline); b++ {
		block := samples[b*opt.Block : min((b+1)*opt.Block, len(samples))]
		for k := range servers {
			s := servers[(b+k)%len(servers)]
			l, w, err := c.qidoBlock(ctx, s, block, opt.Clients)
			if err != nil {
				return nil, err
			}
			lat[s.Name] = append(lat[s.Name], l...)
			wall[s.Name] += w
		}
	}
	out := make(map[string]bench.Stats, len(servers))
	for _, s := range servers {
		out[s.Name] = bench.Summarize(lat[s.Name], wall[s.Name])
	}
	return out, nil
}

// qidoBlock runs one block of searches on clients workers.
func (c *Client) qidoBlock(ctx context.Context, s Server, ids []string, clients int) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, len(ids))
	errs := make([]error, clients)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			var buf bytes.Buffer
			for i := w; i < len(ids); i += clients {
				t := time.Now()
				if _, err := c.SearchStudiesByPatient(ctx, s, ids[i], &buf); err != nil {
					errs[w] = err
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	return lat, time.Since(t0), errors.Join(errs...)
}

// Throughput is the outcome of reading a set of studies, in rounds.
type Throughput struct {
	Studies   int   // per round
	Instances int   // per round
	Bytes     int64 // DICOM payload, all rounds: the sizes of the files
	BodyBytes int64 // bytes received, all rounds (multipart framing included)
	Elapsed   time.Duration
	PerStudy  bench.Stats // latency of one study
}

// MBPerSecond returns payload megabytes (10^6) per second.
func (t *Throughput) MBPerSecond() float64 {
	if t == nil || t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Bytes) / 1e6 / t.Elapsed.Seconds()
}

// Disk is the name of the ceiling in the results of MeasureWADO.
const Disk = "disk"

// MeasureWADO retrieves the studies one after the other with WADO-RS from
// every server, and reads the same studies' files from disk (Disk, the
// ceiling), rounds times; the first of the servers and the disk rotates
// from round to round. A first untimed pass parses every response and
// checks that each study comes back with all its instances and exactly its
// files' bytes; it also leaves every server with the same warm caches.
func (c *Client) MeasureWADO(ctx context.Context, servers []Server, studies []*StudyFiles, rounds int) (map[string]*Throughput, error) {
	if rounds < 1 || len(studies) == 0 {
		return nil, errors.New("dicombench.MeasureWADO: rounds and studies must be positive")
	}
	instances := 0
	for _, st := range studies {
		instances += len(st.Files)
	}
	for _, s := range servers {
		for _, st := range studies {
			_, payload, n, err := c.RetrieveStudy(ctx, s, st.StudyInstanceUID, true)
			if err != nil {
				return nil, err
			}
			if n != len(st.Files) || payload != st.Bytes {
				return nil, fmt.Errorf("%s WADO-RS study %s: %d instances of %d bytes, want %d of %d", s.Name, st.StudyInstanceUID, n, payload, len(st.Files), st.Bytes)
			}
		}
	}
	names := make([]string, 0, len(servers)+1)
	for _, s := range servers {
		names = append(names, s.Name)
	}
	names = append(names, Disk)
	lat := map[string][]time.Duration{}
	out := map[string]*Throughput{}
	for _, name := range names {
		out[name] = &Throughput{Studies: len(studies), Instances: instances}
	}
	buf := make([]byte, 256<<10)
	for r := range rounds {
		for k := range names {
			i := (r + k) % len(names)
			t := out[names[i]]
			for _, st := range studies {
				t0 := time.Now()
				var body int64
				var err error
				if i == len(servers) {
					body, err = readFiles(st.Files, buf)
				} else {
					body, _, _, err = c.RetrieveStudy(ctx, servers[i], st.StudyInstanceUID, false)
				}
				if err != nil {
					return nil, err
				}
				d := time.Since(t0)
				t.Elapsed += d
				t.Bytes += st.Bytes
				t.BodyBytes += body
				lat[names[i]] = append(lat[names[i]], d)
			}
		}
	}
	for _, name := range names {
		out[name].PerStudy = bench.Summarize(lat[name], out[name].Elapsed)
	}
	return out, nil
}

// readFiles reads the files through buf and returns their total size.
func readFiles(files []string, buf []byte) (int64, error) {
	var n int64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return n, err
		}
		for {
			k, err := fh.Read(buf)
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				fh.Close()
				return n, err
			}
		}
		fh.Close()
	}
	return n, nil
}
