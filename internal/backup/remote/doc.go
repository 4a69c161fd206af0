// Package remote keeps copies of volume snapshots off the host, on an
// S3-compatible object store or an SSH server (SFTP), so that a snapshot
// outlives the disk it was taken on.
//
// # Model
//
// A Remote is the few file operations a copy needs (Put, Get, Stat, List,
// DeleteAll), implemented twice: OpenS3 (gitopsd's own small client,
// package s3: path-style addressing, Signature Version 4, any
// S3-compatible server) and OpenSFTP (pkg/sftp over x/crypto/ssh, with
// the server's host key pinned by a known_hosts file). The rules of a copy
// are written once, on top of that, in Upload, Verify, List, Download and
// Delete, so both kinds of remote keep the same promises:
//
//   - A copy is the snapshot folder as the format package writes it
//     locally, file for file: the archive (data.tar.zst, or
//     data.tar.zst.age when the snapshot is encrypted), manifest.json, and
//     the COMMITTED marker.
//   - Upload sends the files last-file-last: the archive, the manifest,
//     reads both back and compares their size and sha256 with the local
//     files, and only then sends COMMITTED (and reads it back). A copy cut
//     short at any point, by a crash, a network failure or a server that
//     went away, has no marker; Upload again finishes it.
//   - A copy counts (Snapshot.Good, StateVerified) only once its archive was
//     read back with the size and sha256 its manifest records. List with
//     CheckSizes is cheap (marker, manifest, archive size: StateCommitted
//     at best); CheckHashes, and Verify, read every byte back. S3 ETags are
//     not used for this: they are an MD5 only for single-part uploads
//     without server-side encryption, which a client cannot rely on across
//     providers, while a read-back hash means the same everywhere.
//   - A copy without its marker is StatePartial, one whose manifest or
//     archive disagrees StateDamaged; neither is ever restored from.
//   - Every network call takes a context and has a deadline: Timeouts.Call
//     bounds the short calls, Timeouts.Idle cancels a transfer that made no
//     progress for that long (a total deadline would cut a large upload on
//     a slow line). Progress is bytes read or written, and bytes leaving a
//     socket's send queue (SIOCOUTQ): a write returns as soon as the kernel
//     holds the bytes, which on a slow uplink may take minutes to send. An
//     SFTP call is interrupted by closing its connection, which the next
//     call dials again.
//   - An S3 body is sent from memory so that its sha256 is signed (never
//     UNSIGNED-PAYLOAD, which plain HTTP would leave open to tampering): a
//     file above 16 MiB goes in multipart parts of that size, one in
//     memory at a time, and an upload that fails is aborted so that no
//     parts are left behind.
//
// # Layout
//
// Under the URL's prefix (S3: s3://host:port/bucket/prefix; SFTP:
// sftp://user@host:port/path, relative to the login folder, or absolute
// with a double slash: sftp://user@host//srv/backups):
//
//	<prefix>/<host>/<stack>/<volume>/<snapshot id>/data.tar.zst
//	<prefix>/<host>/<stack>/<volume>/<snapshot id>/manifest.json
//	<prefix>/<host>/<stack>/<volume>/<snapshot id>/COMMITTED
//
// The host is gitopsd's host.name, so hosts can share a bucket and a
// replaced host finds its predecessor's copies under the same name. A
// snapshot ID must not repeat for a volume even on a host rebuilt with an
// empty state folder: the caller puts a time stamp in it. An SFTP upload
// writes <file>.part and renames it into place; List skips such names.
//
// Restoring by hand needs no gitopsd, only the provider's tools:
//
//	aws s3 cp --recursive --endpoint-url https://host:9000 s3://bucket/prefix/edge-1/shop/db/<id>/ snap/
//	# or: mc cp --recursive alias/bucket/prefix/edge-1/shop/db/<id>/ snap/
//	# or: sftp -i key user@host:/srv/backups/edge-1/shop/db/<id>/* snap/
//	test -f snap/COMMITTED && sha256sum snap/data.tar.zst   # compare with jq -r .archive_sha256 snap/manifest.json
//	zstd -d -c snap/data.tar.zst | tar -x --numeric-owner -p -C /restore
//
// # Credentials
//
// Credentials come from a file of KEY=value lines (ReadCredentials), never
// from the URL: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional
// AWS_REGION and S3_INSECURE=true (plain HTTP) for S3; SSH_KEY_FILE and
// SSH_KNOWN_HOSTS (absolute paths) for SFTP. The parser is strict (an
// unknown key is an error naming its line) and never repeats a value in an
// error; Credentials does not print its values either.
//
// # Use
//
// backup.Offsite drives this package: it uploads each good snapshot under
// its unique name (store.SnapshotName), retries with backoff, applies the
// keep policy to List's result, seals copies of unencrypted snapshots to
// backup.remote.recipients before Upload (format.Seal), and Downloads
// copies for restore tests and restores; backup.Runner.Refill
// (restore: if_empty) and RestoreFrom (`backup restore --from-host`)
// restore a host's newest good copy.
package remote
