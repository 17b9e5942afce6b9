package pullbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Orthanc is the reference: an Orthanc that knows the source as a DICOMweb
// server (DicomWeb.Servers) and pulls studies from it with its own plugin.
type Orthanc struct {
	URL    string // REST root
	Server string // the source's name in DicomWeb.Servers
	HTTP   *http.Client
}

// Retrieve pulls a study from the source with the DICOMweb plugin's
// synchronous POST /dicom-web/servers/{name}/retrieve (one WADO-RS
// GET /studies/{uid} to the source; the answer comes once every instance
// is stored), then checks that Orthanc holds want instances of the study.
// It returns the time the POST took.
func (o *Orthanc) Retrieve(ctx context.Context, uid string, want int) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"Resources": []any{map[string]string{"Study": uid}}})
	t0 := time.Now()
	b, err := o.do(ctx, http.MethodPost, "/dicom-web/servers/"+o.Server+"/retrieve", body)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	var r struct{ ReceivedInstancesCount string }
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("Orthanc retrieve %s: %w: %.300s", uid, err, b)
	}
	if got, err := o.Instances(ctx, uid); err != nil {
		return 0, err
	} else if got != want {
		return 0, fmt.Errorf("Orthanc retrieve %s: %d instances stored (%s received), want %d", uid, got, r.ReceivedInstancesCount, want)
	}
	return d, nil
}

// Instances returns how many instances of a study Orthanc holds.
func (o *Orthanc) Instances(ctx context.Context, uid string) (int, error) {
	b, err := o.do(ctx, http.MethodPost, "/tools/lookup", []byte(uid))
	if err != nil {
		return 0, err
	}
	var found []struct{ ID, Type string }
	if err := json.Unmarshal(b, &found); err != nil {
		return 0, fmt.Errorf("Orthanc lookup %s: %w", uid, err)
	}
	for _, f := range found {
		if f.Type != "Study" {
			continue
		}
		b, err := o.do(ctx, http.MethodGet, "/studies/"+f.ID+"/statistics", nil)
		if err != nil {
			return 0, err
		}
		var st struct{ CountInstances int }
		if err := json.Unmarshal(b, &st); err != nil {
			return 0, fmt.Errorf("Orthanc statistics of %s: %w", uid, err)
		}
		return st.CountInstances, nil
	}
	return 0, nil
}

func (o *Orthanc) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, o.URL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := o.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Orthanc %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("Orthanc %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("Orthanc %s %s: HTTP %d: %.300s", method, path, resp.StatusCode, b)
	}
	return b, nil
}

// Memory is what /proc/<pid>/status says of a process's resident memory.
type Memory struct {
	RSS, HWM int64 // VmRSS and VmHWM (peak), bytes
}

// ReadMemory reads VmRSS and VmHWM of a running process.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("memory of %d: %w", pid, err)
	}
	var m Memory
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if k == "VmRSS" {
			m.RSS = n << 10
		} else {
			m.HWM = n << 10
		}
	}
	if m.HWM == 0 {
		return m, fmt.Errorf("memory of %d: no VmHWM in /proc/%d/status", pid, pid)
	}
	return m, nil
}
