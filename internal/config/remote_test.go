package config

import (
	"strings"
	"testing"
)

func TestBackupRemote(t *testing.T) {
	const recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
	tests := []struct {
		name   string
		remote BackupRemote
		want   string // the whole error; "" means valid
	}{
		{"none", BackupRemote{}, ""},
		{"s3", BackupRemote{URL: "s3://backups.example:9000/bucket/prefix", CredentialsFile: "/etc/gitopsd/remote.env", Recipients: []string{recipient}}, ""},
		{"sftp", BackupRemote{URL: "sftp://backup@nas:22/srv/backups", CredentialsFile: "/etc/gitopsd/remote.env"}, ""},
		{"credentials without url", BackupRemote{CredentialsFile: "/etc/gitopsd/remote.env"},
			"config: backup.remote.url: required with backup.remote.credentials_file"},
		{"recipients without url", BackupRemote{Recipients: []string{recipient}},
			"config: backup.remote.url: required with backup.remote.recipients"},
		{"other scheme", BackupRemote{URL: "webdav://nas/backups", CredentialsFile: "/c"},
			`config: backup.remote.url: scheme "webdav" is not supported (s3 or sftp)`},
		{"secret in url", BackupRemote{URL: "s3://AKID:secret@host/bucket", CredentialsFile: "/c"},
			"config: backup.remote.url: s3 URL must not hold credentials: put them in credentials_file"},
		{"no bucket", BackupRemote{URL: "s3://host:9000", CredentialsFile: "/c"},
			"config: backup.remote.url: s3 URL needs a bucket: s3://host:port/bucket[/prefix]"},
		{"no credentials", BackupRemote{URL: "sftp://backup@nas/srv"},
			"config: backup.remote.credentials_file: required with backup.remote.url (KEY=value lines: the access keys for s3, SSH_KEY_FILE and SSH_KNOWN_HOSTS for sftp)"},
		{"relative credentials", BackupRemote{URL: "sftp://backup@nas/srv", CredentialsFile: "remote.env"},
			"config: backup.remote.credentials_file: must be an absolute path"},
		{"bad recipient", BackupRemote{URL: "sftp://backup@nas/srv", CredentialsFile: "/c", Recipients: []string{recipient, "ssh-ed25519 AAAA"}},
			`config: backup.remote.recipients[1]: "ssh-ed25519 AAAA" is not an age public key (age1...)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Source.URL = "/srv/fleet"
			c.Host.Name = "testhost"
			c.Backup.Remote = tt.remote
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate()\n got: %v\nwant: %s", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("the error repeats the URL's secret: %v", err)
			}
		})
	}
}

func TestBackupRemoteFromFile(t *testing.T) {
	c, err := Load(writeConfig(t, "source: {url: /srv/fleet}\nhost: {name: edge-1}\nbackup:\n  remote:\n    url: s3://backups.example:9000/bucket/prefix\n    credentials_file: /etc/gitopsd/remote.env\n    recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Backup.Remote
	if !r.Enabled() || r.URL != "s3://backups.example:9000/bucket/prefix" || r.CredentialsFile != "/etc/gitopsd/remote.env" || len(r.Recipients) != 1 {
		t.Fatalf("backup.remote = %+v", r)
	}
	_, err = Load(writeConfig(t, "source: {url: /srv/fleet}\nhost: {name: edge-1}\nbackup:\n  remote:\n    url: s3://backups.example:9000/bucket\n    credentials: /etc/gitopsd/remote.env\n"))
	if err == nil || !strings.Contains(err.Error(), "line 6: unknown key backup.remote.credentials") {
		t.Fatalf("a misspelt key = %v, want it named with its line", err)
	}
}
