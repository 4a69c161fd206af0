package testenv

import (
	"os"
	"testing"
)

// TestPrepareServers builds the test servers that come from the Go module
// proxy (the registry, SeaweedFS) into the cache folder, when asked
// (GITOPSD_TEST_PREPARE=1, as make test-tools does). Built here, before the
// suite, their minutes of compiling count against no package's test
// timeout: on a fresh machine SeaweedFS alone takes five or more while the
// rest of the suite loads both cores.
func TestPrepareServers(t *testing.T) {
	if os.Getenv("GITOPSD_TEST_PREPARE") != "1" {
		t.Skip("set GITOPSD_TEST_PREPARE=1 to build the cached test servers (make test-tools does)")
	}
	for name, ensure := range map[string]func(testing.TB) (string, error){"registry": ensureRegistry, "seaweedfs": ensureSeaweed} {
		bin, err := ensure(t)
		if err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}
