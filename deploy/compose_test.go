package deploy

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the module root, where the deployment files live.
const root = ".."

// shipped are the commands the image carries. devOnly are commands under
// cmd/ that stay out of it on purpose (benchmark drivers run from a
// checkout). A new command must be put in one or the other.
var (
	shipped = []string{"api", "prefetcher", "priorflow"}
	devOnly = []string{"dicombench", "fhirbench", "pullbench"}
)

// composeFile is the part of the Compose file format these tests read.
type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string                `yaml:"image"`
	Build       yaml.Node             `yaml:"build"` // "." or {context, dockerfile}
	Command     []string              `yaml:"command"`
	Environment environment           `yaml:"environment"`
	Ports       []string              `yaml:"ports"`
	Volumes     []string              `yaml:"volumes"`
	DependsOn   map[string]dependency `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	ContainerName string `yaml:"container_name"`
}

type dependency struct {
	Condition string `yaml:"condition"`
}

// environment is a service's environment in either Compose form, a mapping
// or a list of NAME=value; values are interpolated as Compose does with an
// empty shell environment (${NAME:-default} gives the default).
type environment map[string]string

func (e *environment) UnmarshalYAML(n *yaml.Node) error {
	*e = environment{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			(*e)[n.Content[i].Value] = interpolate(n.Content[i+1].Value)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			name, value, _ := strings.Cut(item.Value, "=")
			(*e)[name] = interpolate(value)
		}
	default:
		return fmt.Errorf("line %d: environment is neither a mapping nor a list", n.Line)
	}
	return nil
}

var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

func interpolate(s string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		return varRef.FindStringSubmatch(m)[2]
	})
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return &c
}

func (c *composeFile) service(t *testing.T, name string) service {
	t.Helper()
	s, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// envReads returns the environment variables the Go files of a command read:
// the literal first argument of every env("NAME", ...) and envInt("NAME",
// ...) call (the helpers each command's config uses), and of os.Getenv and
// os.LookupEnv. A helper call whose name is not a literal is reported, so
// the set cannot silently miss a variable.
func envReads(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	dir := filepath.Join(root, "cmd", cmd)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	reads := map[string]bool{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			helper := false
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				if fn.Name != "env" && fn.Name != "envInt" {
					return true
				}
				helper = true
			case *ast.SelectorExpr:
				pkg, ok := fn.X.(*ast.Ident)
				if !ok || pkg.Name != "os" || (fn.Sel.Name != "Getenv" && fn.Sel.Name != "LookupEnv") {
					return true
				}
			default:
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				if helper {
					t.Errorf("%s: environment variable name is not a string literal; this test cannot see it", fset.Position(call.Pos()))
				}
				return true
			}
			name, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			reads[name] = true
			return true
		})
	}
	if len(reads) == 0 {
		t.Fatalf("found no environment variables read in %s", dir)
	}
	return reads
}

func TestCompose_Services(t *testing.T) {
	c := loadCompose(t)
	images := map[string]string{"postgres": "postgres:", "nats": "nats:2", "orthanc": "orthancteam/orthanc:"}
	for name, prefix := range images {
		s := c.service(t, name)
		if !strings.HasPrefix(s.Image, prefix) {
			t.Errorf("service %s: image %q, want %s…", name, s.Image, prefix)
		}
		if s.Build.Kind != 0 {
			t.Errorf("service %s: has a build; it runs a published image", name)
		}
	}
	if img := c.service(t, "postgres").Image; img != "postgres:15" && img != "postgres:16" {
		t.Errorf("service postgres: image %q, want postgres:15 or postgres:16", img)
	}
	for _, name := range []string{"api", "prefetcher"} {
		s := c.service(t, name)
		if ctx, dockerfile := buildOf(t, name, s.Build); ctx != "." || dockerfile != "Dockerfile" {
			t.Errorf("service %s: builds %s from context %q, want Dockerfile from \".\"", name, dockerfile, ctx)
		}
		if got, want := s.Command, []string{name}; !slices.Equal(got, want) {
			t.Errorf("service %s: command %q, want %q", name, got, want)
		}
	}
	for name, s := range c.Services {
		if s.Image == "" && s.Build.Kind == 0 {
			t.Errorf("service %s: neither image nor build", name)
		}
	}
}

// buildOf returns the context and Dockerfile of a service's build.
func buildOf(t *testing.T, name string, n yaml.Node) (context, dockerfile string) {
	t.Helper()
	var b struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	}
	switch n.Kind {
	case yaml.ScalarNode:
		b.Context = n.Value
	case yaml.MappingNode:
		if err := n.Decode(&b); err != nil {
			t.Fatalf("service %s: build: %v", name, err)
		}
	default:
		t.Fatalf("service %s: no build", name)
	}
	if b.Dockerfile == "" {
		b.Dockerfile = "Dockerfile"
	}
	return path.Clean(b.Context), b.Dockerfile
}

func TestCompose_Environment_ReadByPrograms(t *testing.T) {
	c := loadCompose(t)
	required := map[string][]string{
		"api":        {"DATABASE_URL", "NATS_URL"},
		"prefetcher": {"DATABASE_URL", "NATS_URL", "PRIORFLOW_CONFIG"},
	}
	for name, req := range required {
		t.Run(name, func(t *testing.T) {
			reads := envReads(t, name)
			env := c.service(t, name).Environment
			for k := range env {
				if !reads[k] {
					t.Errorf("service %s sets %s, which cmd/%s does not read", name, k, name)
				}
			}
			for _, k := range req {
				if env[k] == "" {
					t.Errorf("service %s: %s is not set", name, k)
				}
				if !reads[k] {
					t.Errorf("cmd/%s no longer reads %s", name, k)
				}
			}
		})
	}
}

// TestCompose_Wiring checks that the URLs and paths the programs are given
// point at what the file provides.
func TestCompose_Wiring(t *testing.T) {
	c := loadCompose(t)
	for _, name := range []string{"api", "prefetcher"} {
		s := c.service(t, name)
		for k, host := range map[string]string{"DATABASE_URL": "postgres", "NATS_URL": "nats"} {
			u, err := url.Parse(s.Environment[k])
			if err != nil {
				t.Errorf("service %s: %s: %v", name, k, err)
				continue
			}
			if got := u.Hostname(); got != host {
				t.Errorf("service %s: %s points at %q, want the %s service", name, k, got, host)
			}
		}
		for _, dep := range []string{"postgres", "nats"} {
			if got := s.DependsOn[dep].Condition; got != "service_healthy" {
				t.Errorf("service %s: depends on %s with condition %q, want service_healthy", name, dep, got)
			}
		}
	}
	for name, s := range c.Services {
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s: no healthcheck", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if isNamedVolume(src) {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s: volume %q is not declared under volumes", name, src)
				}
			} else if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("service %s: bind mount source: %v", name, err)
			}
		}
	}

	nats := c.service(t, "nats")
	for _, flag := range []string{"-js", "-sd"} {
		if !slices.Contains(nats.Command, flag) {
			t.Errorf("service nats: command %q lacks %s", nats.Command, flag)
		}
	}
	if got := c.service(t, "orthanc").Environment["DICOM_WEB_PLUGIN_ENABLED"]; got != "true" {
		t.Errorf("service orthanc: DICOM_WEB_PLUGIN_ENABLED=%q, want true", got)
	}

	// The prefetcher's rules file is the repository's, mounted; the api
	// reads the same file (its identifiers: section).
	var cfgs []string
	for _, name := range []string{"prefetcher", "api"} {
		svc := c.service(t, name)
		cfg := svc.Environment["PRIORFLOW_CONFIG"]
		if host, ok := hostPath(svc.Volumes, cfg); !ok {
			t.Errorf("service %s: PRIORFLOW_CONFIG %q is not under a bind mount", name, cfg)
		} else if _, err := os.Stat(filepath.Join(root, host)); err != nil {
			t.Errorf("service %s: PRIORFLOW_CONFIG: %v", name, err)
		} else {
			cfgs = append(cfgs, host)
		}
	}
	if len(cfgs) == 2 && cfgs[0] != cfgs[1] {
		t.Errorf("the api reads %s and the prefetcher %s; they must share one PRIORFLOW_CONFIG", cfgs[1], cfgs[0])
	}

	// The api's data and blobs live on a volume.
	api := c.service(t, "api")
	dataDir := api.Environment["PRIORFLOW_DATA_DIR"]
	if _, ok := mountOf(api.Volumes, dataDir); !ok {
		t.Errorf("service api: PRIORFLOW_DATA_DIR %q is not a mounted volume", dataDir)
	}
	blob, err := url.Parse(api.Environment["PRIORFLOW_BLOB_URL"])
	if err != nil {
		t.Fatalf("service api: PRIORFLOW_BLOB_URL: %v", err)
	}
	if blob.Scheme != "file" {
		t.Errorf("service api: PRIORFLOW_BLOB_URL scheme %q, want file", blob.Scheme)
	} else if _, ok := mountOf(api.Volumes, blob.Path); !ok {
		t.Errorf("service api: PRIORFLOW_BLOB_URL path %q is not on a mounted volume", blob.Path)
	}
}

func isNamedVolume(src string) bool {
	return !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "~")
}

// mountOf returns the volume entry ("src:target[:mode]") whose target holds p.
func mountOf(volumes []string, p string) (src string, ok bool) {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if target := path.Clean(parts[1]); p == target || strings.HasPrefix(p, target+"/") {
			return parts[0], true
		}
	}
	return "", false
}

// hostPath maps a container path under a bind mount to the host path,
// relative to the module root.
func hostPath(volumes []string, p string) (string, bool) {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || isNamedVolume(parts[0]) {
			continue
		}
		target := path.Clean(parts[1])
		if rest, ok := strings.CutPrefix(p, target+"/"); ok {
			return path.Join(parts[0], rest), true
		}
	}
	return "", false
}

// published is one short-syntax port mapping: [ip:]host:container[/proto].
type published struct {
	IP              string
	Host, Container int
}

func parsePort(t *testing.T, svc, spec string) published {
	t.Helper()
	spec, _, _ = strings.Cut(spec, "/")
	parts := strings.Split(spec, ":")
	var p published
	if len(parts) == 3 {
		p.IP, parts = parts[0], parts[1:]
	}
	if len(parts) != 2 {
		t.Fatalf("service %s: port %q: want [ip:]host:container", svc, spec)
	}
	var err1, err2 error
	p.Host, err1 = strconv.Atoi(parts[0])
	p.Container, err2 = strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("service %s: port %q: want numbers", svc, spec)
	}
	return p
}

func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

func TestCompose_Ports(t *testing.T) {
	c := loadCompose(t)
	ports := map[string][]published{}
	for name, s := range c.Services {
		for _, spec := range s.Ports {
			p := parsePort(t, name, spec)
			// Nothing in the stack authenticates yet (api, NATS and
			// Orthanc alike): publish on loopback only.
			if p.IP != "127.0.0.1" {
				t.Errorf("service %s: port %q is published beyond 127.0.0.1", name, spec)
			}
			ports[name] = append(ports[name], p)
		}
	}
	api := c.service(t, "api")
	want := map[string][]int{
		"api":     {addrPort(t, api.Environment["PRIORFLOW_HTTP_ADDR"]), addrPort(t, api.Environment["PRIORFLOW_MLLP_ADDR"])},
		"orthanc": {8042},
	}
	if got := want["api"]; !slices.Equal(got, []int{8080, 2575}) {
		t.Errorf("api listens on %v, want 8080 (HTTP) and 2575 (MLLP)", got)
	}
	for name, containerPorts := range want {
		for _, cp := range containerPorts {
			if !slices.ContainsFunc(ports[name], func(p published) bool { return p.Container == cp && p.Host == cp }) {
				t.Errorf("service %s: port %d is not published as %d", name, cp, cp)
			}
		}
	}
	if u, err := url.Parse(api.Environment["PRIORFLOW_BASE_URL"]); err != nil || u.Port() != strconv.Itoa(want["api"][0]) {
		t.Errorf("service api: PRIORFLOW_BASE_URL %q does not name the published HTTP port", api.Environment["PRIORFLOW_BASE_URL"])
	}
}

func TestCompose_PrefetcherReplicas(t *testing.T) {
	s := loadCompose(t).service(t, "prefetcher")
	if s.Deploy.Replicas == nil {
		t.Error("prefetcher sets no deploy.replicas, want 2")
	} else if got := *s.Deploy.Replicas; got != 2 {
		t.Errorf("prefetcher deploy.replicas = %d, want 2", got)
	}
	// Replicas cannot share a container name or a host port.
	if s.ContainerName != "" {
		t.Errorf("prefetcher sets container_name %q", s.ContainerName)
	}
	if len(s.Ports) != 0 {
		t.Errorf("prefetcher publishes ports %q", s.Ports)
	}
}

// instruction is one Dockerfile instruction with continuation lines joined.
type instruction struct {
	Cmd  string // upper case
	Args string
}

func loadDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var cmdTarget = regexp.MustCompile(`\./cmd/([a-z0-9_-]+)`)

func TestDockerfile_BuildsCommands(t *testing.T) {
	ins := loadDockerfile(t)
	var built []string
	for _, in := range ins {
		if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
			continue
		}
		if !strings.Contains(in.Args, "CGO_ENABLED=0") || !strings.Contains(in.Args, "-trimpath") {
			t.Errorf("go build without CGO_ENABLED=0 and -trimpath: %s", in.Args)
		}
		for _, m := range cmdTarget.FindAllStringSubmatch(in.Args, -1) {
			built = append(built, m[1])
		}
	}
	slices.Sort(built)
	if !slices.Equal(built, shipped) {
		t.Errorf("Dockerfile builds %q, want %q", built, shipped)
	}

	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var present []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		present = append(present, e.Name())
		if !slices.Contains(shipped, e.Name()) && !slices.Contains(devOnly, e.Name()) {
			t.Errorf("cmd/%s is new: add it to the Dockerfile's go build (and shipped) or to devOnly", e.Name())
		}
	}
	for _, name := range shipped {
		if !slices.Contains(present, name) {
			t.Errorf("the image ships cmd/%s, which does not exist", name)
			continue
		}
		if pkg := packageName(t, filepath.Join(root, "cmd", name)); pkg != "main" {
			t.Errorf("cmd/%s is package %q, not a command", name, pkg)
		}
	}
}

func packageName(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".go") && !strings.HasSuffix(e.Name(), "_test.go") {
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, e.Name()), nil, parser.PackageClauseOnly)
			if err != nil {
				t.Fatal(err)
			}
			return f.Name.Name
		}
	}
	return ""
}

func TestDockerfile_Runtime(t *testing.T) {
	ins := loadDockerfile(t)
	var froms []string
	user, defaultCmd := "", ""
	envs := map[string]bool{}
	for _, in := range ins {
		switch in.Cmd {
		case "FROM":
			froms = append(froms, strings.Fields(in.Args)[0])
		case "USER":
			user = in.Args
		case "CMD":
			defaultCmd = in.Args
		case "ENV":
			for _, f := range strings.Fields(in.Args) {
				if name, _, ok := strings.Cut(f, "="); ok {
					envs[name] = true
				}
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a builder and a runtime stage", len(froms))
	}
	goVersion := goDirective(t)
	if tag, ok := strings.CutPrefix(froms[0], "golang:"); !ok || !(tag == goVersion || strings.HasPrefix(tag, goVersion+".") || strings.HasPrefix(tag, goVersion+"-")) {
		t.Errorf("builder stage is %q, want golang:%s (go.mod)", froms[0], goVersion)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("runtime user is %q, want an unprivileged user", user)
	}
	if defaultCmd != `["api"]` {
		t.Errorf("CMD %s, want [\"api\"]", defaultCmd)
	}
	reads := envReads(t, "api")
	for k := range envReads(t, "prefetcher") {
		reads[k] = true
	}
	for k := range envs {
		if !reads[k] {
			t.Errorf("Dockerfile sets ENV %s, which neither api nor prefetcher reads", k)
		}
	}
}

// goDirective returns the major.minor of go.mod's go line.
func goDirective(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			parts := strings.SplitN(v, ".", 3)
			if len(parts) >= 2 {
				return parts[0] + "." + parts[1]
			}
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}
