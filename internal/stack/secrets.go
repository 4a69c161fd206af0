package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/secrets"
)

// decryptEnvFiles takes the SOPS-encrypted env_file entries out of each
// service of project, decrypted in memory, and puts their values into the
// service's environment where it does not set them itself (with skip,
// they are only taken out). It runs before
// normalize, which reads the plain env files: values of encrypted files win
// over those of plain ones, and `environment:` wins over both. The
// plaintext lives only in the project; nothing is written to disk.
func (l *locator) decryptEnvFiles(project *types.Project, identities []age.Identity, skip bool) error {
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		var plain []types.EnvFile
		var decrypted []secrets.EnvVar
		for i, ef := range svc.EnvFiles {
			keyPath := fmt.Sprintf("services.%s.env_file.%d", name, i)
			data, err := secrets.ReadFile(ef.Path, MaxFileBytes)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return l.atPath(keyPath, l.hidePaths(err))
			}
			if err != nil || !secrets.IsEncrypted(data, secrets.Dotenv) {
				plain = append(plain, ef) // a missing file is for compose-go to judge
				continue
			}
			if skip {
				continue
			}
			if len(identities) == 0 {
				return l.atPath(keyPath, fmt.Sprintf("%s is SOPS-encrypted and this host has no age key to decrypt it (secrets.age_key_file)", filepath.Base(ef.Path)))
			}
			pairs, encrypted, err := secrets.DecryptEnvDocument(data, identities)
			if err != nil {
				return l.atPath(keyPath, fmt.Sprintf("decrypt %s: %v", filepath.Base(ef.Path), err))
			}
			l.redactor.Add(l.stack, encrypted...)
			decrypted = append(decrypted, pairs...)
		}
		if len(plain) == len(svc.EnvFiles) {
			continue
		}
		env := types.MappingWithEquals{}
		for _, kv := range decrypted { // a later file wins, as with env_file
			v := kv.Value
			env[kv.Name] = &v
		}
		for k, v := range svc.Environment {
			env[k] = v // environment: wins, as over any env_file
		}
		svc.Environment = env
		svc.EnvFiles = plain
		project.Services[name] = svc
	}
	return nil
}

// decryptFileObjects replaces each SOPS-encrypted file of the project's
// secrets and configs by its plaintext, decrypted in memory: the container
// then gets it written in (engine.InjectedFile) instead of a bind of the
// ciphertext, and the plaintext never touches the host's disk. YAML, JSON
// and dotenv files (by name, as sops picks) give the document sops decrypt
// prints; any other file is sops's binary format, whose plaintext is its
// data. With skip (a host the stack does not run on) nothing is read.
func (l *locator) decryptFileObjects(project *types.Project, identities []age.Identity, skip bool) error {
	if skip {
		return nil
	}
	decrypt := func(kind, name string, obj *types.FileObjectConfig) error {
		if obj.File == "" {
			return nil
		}
		keyPath := fmt.Sprintf("%s.%s.file", kind, name)
		data, err := secrets.ReadFile(obj.File, MaxObjectBytes)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a missing file is for compose-go and the engine to judge
		}
		if err != nil {
			return l.atPath(keyPath, l.hidePaths(err))
		}
		format, document := secrets.FormatOf(obj.File)
		if !document {
			format = secrets.JSON
		}
		if !secrets.IsEncrypted(data, format) {
			return nil
		}
		if len(identities) == 0 {
			return l.atPath(keyPath, fmt.Sprintf("%s is SOPS-encrypted and this host has no age key to decrypt it (secrets.age_key_file)", filepath.Base(obj.File)))
		}
		plain, encrypted, err := secrets.DecryptDocument(data, format, identities)
		if err != nil {
			return l.atPath(keyPath, fmt.Sprintf("decrypt %s: %v", filepath.Base(obj.File), err))
		}
		l.redactor.Add(l.stack, encrypted...)
		if !document {
			var binary struct {
				Data *string `json:"data"`
			}
			if err := json.Unmarshal(plain, &binary); err != nil || binary.Data == nil {
				return l.atPath(keyPath, fmt.Sprintf("%s is a SOPS JSON document, not a file sops encrypted as binary: name it .json to use it as one", filepath.Base(obj.File)))
			}
			plain = []byte(*binary.Data)
		}
		obj.Content, obj.File = string(plain), ""
		return nil
	}
	// In name order, so a stack with several such files always names the
	// same one in its error.
	for _, name := range slices.Sorted(maps.Keys(project.Secrets)) {
		obj := types.FileObjectConfig(project.Secrets[name])
		if err := decrypt("secrets", name, &obj); err != nil {
			return err
		}
		project.Secrets[name] = types.SecretConfig(obj)
	}
	for _, name := range slices.Sorted(maps.Keys(project.Configs)) {
		obj := types.FileObjectConfig(project.Configs[name])
		if err := decrypt("configs", name, &obj); err != nil {
			return err
		}
		project.Configs[name] = types.ConfigObjConfig(obj)
	}
	return nil
}

// hidePaths is err's text with the checkout's own path taken out: users
// know their files by the path in the repository.
func (l *locator) hidePaths(err error) string {
	return strings.ReplaceAll(err.Error(), l.repoDir+string(filepath.Separator), "")
}
