package vocab

import (
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// MaxFileObjectBytes bounds each host file of a secret or config (file:):
// the loader refuses a bigger one, naming it, and the engine's digest of
// the files refuses it again rather than read it.
const MaxFileObjectBytes = 8 << 20

// CannotCreate names the keys of svc that gitopsd cannot honour, sorted:
// model runners and providers, the socket of a desktop's engine
// (use_api_socket), Windows credential specs, a MAC address (the engine
// here, API 1.41, takes it only from a field the client no longer has),
// and uts: service:, a mode the engine does not have.
func CannotCreate(svc types.ServiceConfig) []string {
	var keys []string
	for _, k := range []struct {
		key  string
		used bool
	}{
		{"credential_spec", svc.CredentialSpec != nil}, {"mac_address", svc.MacAddress != ""},
		{"models", len(svc.Models) > 0}, {"provider", svc.Provider != nil},
		{"use_api_socket", svc.UseAPISocket}, {"uts", strings.HasPrefix(svc.Uts, types.ServicePrefix)},
	} {
		if k.used {
			keys = append(keys, k.key)
		}
	}
	return keys
}
