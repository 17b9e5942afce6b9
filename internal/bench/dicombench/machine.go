package dicombench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// MachineLines describe where a run happens: cores, CPU, memory, the Go
// version and the load average at the start.
func MachineLines() []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem, _, _ = strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(mem)[1:], " ")
	}
	return []string{
		fmt.Sprintf("machine: %d × %s, MemTotal %s; both servers, PostgreSQL and this client share the cores (and other work on the machine)", runtime.NumCPU(), cpu, mem),
		fmt.Sprintf("client: %s, %s", runtime.Version(), time.Now().UTC().Format(time.RFC3339)),
		"load average at the start: " + LoadAvg(),
	}
}

// LoadAvg returns the 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
