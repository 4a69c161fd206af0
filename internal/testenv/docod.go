package testenv

import "testing"

// DocoCDVersion is the version of doco-cd, the GitOps daemon issue 20
// compares gitopsd with, that DocoCD builds.
const DocoCDVersion = "v0.110.1"

const docoModule = "github.com/kimdre/doco-cd"

// DocoCD returns doco-cd's binary, built the first time from the Go
// module proxy into the tool cache (cachedTool), or why it could not be.
func DocoCD(t testing.TB) (string, error) {
	return cachedTool(t, "doco-cd", DocoCDVersion, "doco-cd", func(dir, bin string) error {
		return buildFromProxy(dir, bin, docoModule, DocoCDVersion, "./cmd/doco-cd")
	})
}
