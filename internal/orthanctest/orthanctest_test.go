package orthanctest_test

import (
	"strings"
	"testing"

	"github.com/priorflow/priorflow/internal/orthanctest"
)

func TestStart_ServesDICOMweb(t *testing.T) {
	t.Parallel()
	o := orthanctest.Start(t)
	code, body := o.Do(t, "GET", "/dicom-web/studies", nil)
	if code != 200 || !strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
		t.Errorf("QIDO on a fresh Orthanc: %d %s", code, body)
	}
}
