package remote

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tests := []struct {
		name    string
		scheme  Scheme
		file    string
		want    Credentials
		wantErr string // substring; "" means no error
	}{
		{name: "s3", scheme: SchemeS3,
			file: "# backups\nAWS_ACCESS_KEY_ID=AKIDEXAMPLE\n\nAWS_SECRET_ACCESS_KEY=\"" + secret + "\"\nAWS_REGION=eu-west-1\nS3_INSECURE=true\n",
			want: Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: secret, Region: "eu-west-1", Insecure: true}},
		{name: "sftp", scheme: SchemeSFTP,
			file: "export SSH_KEY_FILE=/etc/gitopsd/backup_key\nSSH_KNOWN_HOSTS = /etc/gitopsd/backup_known_hosts\n",
			want: Credentials{SSHKeyFile: "/etc/gitopsd/backup_key", SSHKnownHosts: "/etc/gitopsd/backup_known_hosts"}},
		{name: "unknown key names the line", scheme: SchemeS3,
			file:    "AWS_ACCESS_KEY_ID=AKIDEXAMPLE\nAWS_SECRET_ACCESS_KEY=" + secret + "\nAWS_SESSION_TOKEN=" + secret + "\n",
			wantErr: "line 3: unknown key AWS_SESSION_TOKEN for a s3 remote"},
		{name: "sftp key in an s3 file", scheme: SchemeS3,
			file:    "SSH_KEY_FILE=/k\n",
			wantErr: "line 1: unknown key SSH_KEY_FILE"},
		{name: "a pasted secret is not echoed", scheme: SchemeS3,
			file:    secret + "\n",
			wantErr: "line 1: not a KEY=value line"},
		{name: "a secret before = is not echoed", scheme: SchemeS3,
			file:    secret + "=x\n",
			wantErr: "line 1: unknown key (a key with characters"},
		{name: "required key missing", scheme: SchemeS3,
			file:    "AWS_ACCESS_KEY_ID=AKIDEXAMPLE\n",
			wantErr: "AWS_SECRET_ACCESS_KEY is required"},
		{name: "twice", scheme: SchemeS3,
			file:    "AWS_ACCESS_KEY_ID=a\nAWS_ACCESS_KEY_ID=" + secret + "\n",
			wantErr: "line 2: AWS_ACCESS_KEY_ID is set twice"},
		{name: "empty value", scheme: SchemeSFTP,
			file:    "SSH_KEY_FILE=\n",
			wantErr: "line 1: SSH_KEY_FILE is empty"},
		{name: "insecure not a bool", scheme: SchemeS3,
			file:    "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=" + secret + "\nS3_INSECURE=yes\n",
			wantErr: "S3_INSECURE must be true or false"},
		{name: "relative key file", scheme: SchemeSFTP,
			file:    "SSH_KEY_FILE=backup_key\nSSH_KNOWN_HOSTS=/k\n",
			wantErr: "SSH_KEY_FILE must be an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCredentials("/etc/gitopsd/remote.env", []byte(tt.file), tt.scheme)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want {
					t.Fatalf("got %+v, want %+v", got, tt.want) // %+v of a struct bypasses String: test values only
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "/etc/gitopsd/remote.env") {
				t.Errorf("error does not name the file: %v", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestCredentialsNeverPrint(t *testing.T) {
	c := Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t", SSHKeyFile: "/k"}
	for _, format := range []string{"%v", "%s", "%#v"} {
		if out := fmt.Sprintf(format, c); strings.Contains(out, "s3cr3t") || strings.Contains(out, "AKIDEXAMPLE") {
			t.Errorf("%s shows a credential: %s", format, out)
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		want    Location
		wantErr string
	}{
		{url: "s3://backups.example:9000/bucket/prefix/a", want: Location{Scheme: SchemeS3, Host: "backups.example:9000", Bucket: "bucket", Prefix: "prefix/a"}},
		{url: "s3://s3.amazonaws.com/bucket", want: Location{Scheme: SchemeS3, Host: "s3.amazonaws.com:443", Bucket: "bucket"}},
		{url: "sftp://backup@nas:2222/srv/backups", want: Location{Scheme: SchemeSFTP, Host: "nas:2222", User: "backup", Prefix: "srv/backups"}},
		{url: "sftp://backup@nas//srv/backups/", want: Location{Scheme: SchemeSFTP, Host: "nas:22", User: "backup", Prefix: "/srv/backups"}},
		{url: "sftp://backup@[::1]:22/x", want: Location{Scheme: SchemeSFTP, Host: "[::1]:22", User: "backup", Prefix: "x"}},
		{url: "s3://host:9000/", wantErr: "needs a bucket"},
		{url: "s3://key:secret@host/bucket", wantErr: "must not hold credentials"},
		{url: "sftp://host/path", wantErr: "needs a user"},
		{url: "sftp://u:pw@host/path", wantErr: "must not hold a password"},
		{url: "https://host/bucket", wantErr: `scheme "https" is not supported`},
		{url: "s3://host:99999/bucket", wantErr: "port"},
		{url: "s3://host/bucket?x=1", wantErr: "query"},
	}
	for _, tt := range tests {
		got, err := ParseURL(tt.url)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseURL(%q) err = %v, want %q", tt.url, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") || err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("ParseURL(%q) error repeats the userinfo: %v", tt.url, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", tt.url, got, err, tt.want)
		}
	}
	if s := (Location{Scheme: SchemeSFTP, Host: "nas:22", User: "backup", Prefix: "/srv/backups"}).String(); s != "sftp://backup@nas:22//srv/backups" {
		t.Errorf("String of an absolute sftp path = %s", s)
	}
}

func TestSegmentsStayOneFolderDeep(t *testing.T) {
	for _, v := range []Volume{{"h", "..", "v"}, {"h", "a/b", "v"}, {"", "s", "v"}, {"h", "s", "v.part"}} {
		if err := (Key{Volume: v, ID: "1"}).check(); err == nil {
			t.Errorf("%+v accepted", v)
		}
	}
}
