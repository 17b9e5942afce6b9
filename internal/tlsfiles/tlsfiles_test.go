package tlsfiles

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/priorflow/priorflow/internal/tlstest"
)

func TestServerAndClient(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	_, cert, key := ca.Issue(t, "srv", true)
	if _, err := Server("", key, ""); err == nil {
		t.Error("Server without a certificate succeeded")
	}
	if _, err := Server(cert, key, filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Server with a missing CA file = %v, want ErrNotExist", err)
	}
	if _, err := Server(cert, key, key); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("Server with a key as CA file = %v", err)
	}
	if _, err := Client(cert, "", ""); err == nil {
		t.Error("Client with a certificate and no key succeeded")
	}
	cfg, err := Server(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("Server without client CA: MinVersion %x, ClientAuth %v", cfg.MinVersion, cfg.ClientAuth)
	}
	if cfg, err = Server(cert, key, ca.File); err != nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ClientCAs == nil {
		t.Errorf("Server with client CA: %v, %v", cfg, err)
	}
	if cfg, err = Client(cert, key, ca.File); err != nil || len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("Client: %v, %v", cfg, err)
	}
}
