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
// server (DicomWeb.Servers) and pulls studies from it with its own plugin,
// or knows it as a DICOM modality and pulls by C-MOVE to itself.
type Orthanc struct {
	URL    string // REST root
	Server string // the source's name in DicomWeb.Servers, or as a modality
	// AET is its own AE title, the destination of its C-MOVEs.
	AET  string
	HTTP *http.Client
}

// Pull pulls a study as the reference was set up to: by C-MOVE when it has
// an AE title, else over DICOMweb (Retrieve).
func (o *Orthanc) Pull(ctx context.Context, uid string, want int) (time.Duration, error) {
	if o.AET != "" {
		return o.Move(ctx, uid, want)
	}
	return o.Retrieve(ctx, uid, want)
}

// Move pulls a study from the source modality with a synchronous
// POST /modalities/{name}/move to Orthanc's own AE title (a C-MOVE; the
// answer comes once the source has sent every instance), then checks that
// Orthanc holds want instances of the study. It returns the time the POST
// took.
func (o *Orthanc) Move(ctx context.Context, uid string, want int) (time.Duration, error) {
	body, _ := json.Marshal(map[string]any{"Level": "Study", "Resources": []any{map[string]string{"StudyInstanceUID": uid}},
		"TargetAet": o.AET, "Synchronous": true})
	t0 := time.Now()
	if _, err := o.do(ctx, http.MethodPost, "/modalities/"+o.Server+"/move", body); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if got, err := o.Instances(ctx, uid); err != nil {
		return 0, err
	} else if got != want {
		return 0, fmt.Errorf("Orthanc move %s: %d instances stored, want %d", uid, got, want)
	}
	return d, nil
}

// AddModality tells Orthanc of a DICOM peer on 127.0.0.1:port, allowed to
// query and retrieve.
func (o *Orthanc) AddModality(ctx context.Context, name, aet string, port int) error {
	body, _ := json.Marshal(map[string]any{"AET": aet, "Host": "127.0.0.1", "Port": port,
		"AllowEcho": true, "AllowFind": true, "AllowMove": true, "AllowGet": true, "AllowStore": true})
	_, err := o.do(ctx, http.MethodPut, "/modalities/"+name, body)
	return err
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
