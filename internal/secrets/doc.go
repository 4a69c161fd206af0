// Package secrets decrypts SOPS files (https://github.com/getsops/sops) with
// age identities, in memory. It is the only place in gitopsd that sees
// secret plaintext: nothing here logs, and no error it returns contains a
// decrypted value or comment. Errors name the file's key paths and
// recipients instead, which SOPS keeps in cleartext anyway.
//
// # Why not the sops library
//
// Linking github.com/getsops/sops/v3 more than doubles the binary because it
// pulls in every cloud KMS SDK. gitopsd only needs the decrypting half of
// SOPS, for age keys, so this package implements the documented file format
// on top of filippo.io/age.
//
// # The model
//
// A SOPS file is a document (dotenv, YAML or JSON) whose keys are in
// cleartext and whose values are each encrypted on their own with AES-256-GCM
// under one random data key, written as
//
//	ENC[AES256_GCM,data:<base64>,iv:<base64>,tag:<base64>,type:<str|int|float|bool|time|bytes|comment>]
//
// The data key itself is encrypted for every recipient and stored, with the
// rest of the metadata, under the top-level "sops" key (YAML, JSON) or in
// "sops_"-prefixed, flattened keys (dotenv). Decrypting is therefore:
//
//  1. parse the document into an ordered tree of mappings, lists, scalars
//     and comments, exactly as SOPS's stores do, and take the metadata out;
//  2. recover the data key with one of the age identities (when the file
//     uses several key groups, combine the groups' Shamir shares);
//  3. walk the tree in document order; each value that the file's rule
//     (unencrypted_suffix, encrypted_regex, ...) says is encrypted is
//     decrypted with its key path "a:b:c:" as additional authenticated data,
//     so a value cannot be moved to another key unnoticed;
//  4. hash every value (or, with mac_only_encrypted, every encrypted one) in
//     walk order with SHA-512 and compare with the file's MAC, itself
//     encrypted with the lastmodified timestamp as additional data, so no
//     value can be added, removed, reordered or left unencrypted unnoticed;
//  5. write the tree back in the file's format, without the metadata, the way
//     "sops decrypt" does.
//
// # Redaction
//
// A container may print what it was given, and gitopsd records what its
// hooks, probes, verify commands and builds print. DecryptDocument and
// DecryptEnvDocument also return the values that were encrypted (not those
// the file's rule left in cleartext), and a Redactor, filled by the stack
// loader as it decrypts, takes them out of every text gitopsd records or
// logs: the store's free-text columns, the log (Redactor.Handler),
// notifications and API errors. See Redactor for the forms it catches and
// MinRedactLen for the values it leaves.
//
// # Reading
//
// The files that may hold secrets come from a repository that may be
// hostile: ReadFile reads one with a size limit, and refuses a device (whose
// size says 0, as /dev/zero's does) or a FIFO (opened without waiting for a
// writer) before reading anything.
//
// Only age is supported; files whose data key is encrypted for PGP or a cloud
// KMS only are refused with an error that says so. SOPS's binary and INI
// formats are not supported.
package secrets
