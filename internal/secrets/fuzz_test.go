package secrets

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// FuzzDecrypt feeds Decrypt real sops files, broken ones and garbage. It
// must never panic, and what it accepts must look encrypted to IsEncrypted
// and come out as a valid document.
func FuzzDecrypt(f *testing.F) {
	formats := []Format{Dotenv, YAML, JSON}
	index := func(fm Format) uint8 {
		for i, x := range formats {
			if x == fm {
				return uint8(i)
			}
		}
		f.Fatalf("unknown format %q", fm)
		return 0
	}
	names, err := filepath.Glob("testdata/*.*")
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range names {
		name := filepath.Base(path)
		if fm, ok := FormatOf(name); ok {
			f.Add(readFixture(f, name), index(fm))
		}
	}
	for _, garbage := range []string{
		"",
		"\x00",
		"=\n#\n",
		"sops_mac=ENC[AES256_GCM,data:,iv:,tag:,type:str]\nsops_lastmodified=2024-01-01T00:00:00Z\nsops_age__list_0__map_enc=x\n",
		"sops_a__list_-1=x\nsops_a__list_1=y\nsops_mac=z\n",
		`{"sops": {"mac": "", "age": [{"enc": "", "recipient": ""}], "lastmodified": "2024-01-01T00:00:00Z"}}`,
		`{"a": [[[{"b": null}]]], "sops": 1}`,
		"a: &x [1, *x]\nsops: {mac: x}\n",
		"a: ENC[AES256_GCM,data:AAAA,iv:,tag:AAAA,type:int]\nsops: {key_groups: [{age: []}, {}], shamir_threshold: 300}\n",
	} {
		for i := range formats {
			f.Add([]byte(garbage), uint8(i))
		}
	}
	ids := identities(f, "both")

	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		fm := formats[int(format)%len(formats)]
		encrypted := IsEncrypted(data, fm)
		out, err := Decrypt(data, fm, ids)
		if err != nil {
			return
		}
		if !encrypted {
			t.Error("Decrypt succeeded on data IsEncrypted rejects")
		}
		if fm == JSON && !json.Valid(out) {
			t.Errorf("Decrypt returned invalid JSON: %q", out)
		}
		if fm == Dotenv {
			if _, err := DecryptEnv(data, ids); err != nil {
				t.Errorf("Decrypt succeeded but DecryptEnv failed: %v", err)
			}
		}
	})
}
