package secrets

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// dataKeySize is the size of the AES-256 key sops encrypts values with.
const dataKeySize = 32

// dataKey recovers the file's data key with identities. With one key group
// any key of the group will do; with several, sops split the data key with
// Shamir's secret sharing and threshold groups must yield their share.
func (m *metadata) dataKey(identities []age.Identity) ([]byte, error) {
	if len(m.groups) == 1 {
		key, err := m.groups[0].decrypt(identities)
		if err != nil {
			return nil, err
		}
		if len(key) != dataKeySize {
			return nil, fmt.Errorf("data key has %d bytes, want %d", len(key), dataKeySize)
		}
		return key, nil
	}
	// sops refuses thresholds below 2 when it splits the key.
	need := max(m.threshold, 2)
	var shares [][]byte
	var errs []error
	for i, g := range m.groups {
		share, err := g.decrypt(identities)
		if err != nil {
			errs = append(errs, fmt.Errorf("key group %d: %w", i+1, err))
			continue
		}
		shares = append(shares, share)
	}
	if len(shares) < need {
		return nil, fmt.Errorf("data key is split over %d key groups, %d needed, %d decrypted: %w",
			len(m.groups), need, len(shares), errors.Join(errs...))
	}
	key, err := combineShares(shares)
	if err != nil {
		return nil, fmt.Errorf("combine data key shares: %w", err)
	}
	if len(key) != dataKeySize {
		return nil, fmt.Errorf("data key has %d bytes, want %d", len(key), dataKeySize)
	}
	return key, nil
}

// decrypt returns what the group's keys encrypt, using the first age key
// that one of identities opens.
func (g keyGroup) decrypt(identities []age.Identity) ([]byte, error) {
	if len(g.age) == 0 {
		return nil, fmt.Errorf("%w: this file's data key is only encrypted for %s; gitopsd decrypts age only",
			ErrUnsupported, strings.Join(g.others, ", "))
	}
	var recipients []string
	for _, k := range g.age {
		recipients = append(recipients, k.recipient)
		if len(identities) == 0 {
			continue
		}
		key, err := openAge(k.enc, identities)
		var noMatch *age.NoIdentityMatchError
		switch {
		case errors.As(err, &noMatch):
			continue
		case err != nil:
			// A key that is ours but damaged will not get better with
			// the next one; say so rather than "no identity matches".
			return nil, fmt.Errorf("decrypt data key for %s: %w", k.recipient, err)
		}
		return key, nil
	}
	err := fmt.Errorf("%w the file's recipients %s", ErrNoIdentity, strings.Join(recipients, ", "))
	if len(identities) == 0 {
		err = fmt.Errorf("%w: no age identities given", err)
	}
	if len(g.others) > 0 {
		err = fmt.Errorf("%w (it is also encrypted for %s, which gitopsd does not use)", err, strings.Join(g.others, ", "))
	}
	return nil, err
}

// openAge decrypts an ASCII-armored age file holding a data key or share.
func openAge(armored string, identities []age.Identity) ([]byte, error) {
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(armored)), identities...)
	if err != nil {
		return nil, err
	}
	// A key, or a share of one, is 33 bytes at most; read a little more to
	// notice a payload that is not one without reading a large one.
	const limit = 256
	b, err := io.ReadAll(io.LimitReader(r, limit))
	if err != nil {
		return nil, err
	}
	if len(b) == limit {
		return nil, errors.New("encrypted data key is too long")
	}
	return b, nil
}

// combineShares recovers a secret split with Shamir's secret sharing as sops
// (after HashiCorp Vault) does it: each byte of the secret is the constant
// term of a random polynomial over GF(2⁸), and each share is the
// polynomial's values at one x, with x appended as the share's last byte.
// Lagrange interpolation at x = 0 gives the secret back.
func combineShares(shares [][]byte) ([]byte, error) {
	n := len(shares[0])
	if n < 2 {
		return nil, errors.New("share too short")
	}
	xs := make([]byte, len(shares))
	seen := map[byte]bool{}
	for i, s := range shares {
		if len(s) != n {
			return nil, errors.New("shares differ in length")
		}
		x := s[n-1]
		if seen[x] {
			return nil, errors.New("duplicate share")
		}
		seen[x] = true
		xs[i] = x
	}
	// The Lagrange basis polynomial of share i, at 0: the product of
	// xj / (xi - xj) over the other shares; in GF(2⁸) subtracting is xor.
	basis := make([]byte, len(shares))
	for i, xi := range xs {
		basis[i] = 1
		for j, xj := range xs {
			if j != i {
				basis[i] = gfMul(basis[i], gfMul(xj, gfInv(xi^xj)))
			}
		}
	}
	secret := make([]byte, n-1)
	for b := range secret {
		for i, s := range shares {
			secret[b] ^= gfMul(s[b], basis[i])
		}
	}
	return secret, nil
}

// gfMul multiplies in GF(2⁸) modulo x⁸ + x⁴ + x³ + x + 1, AES's field,
// without branching on the operands, which are key material.
func gfMul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		b >>= 1
		// Multiply a by x, reducing when the x⁷ term overflows.
		a = a<<1 ^ (-(a >> 7) & 0x1b)
	}
	return p
}

// gfInv is the multiplicative inverse in GF(2⁸): a²⁵⁴, since a²⁵⁵ = 1.
func gfInv(a byte) byte {
	r := byte(1)
	for range 254 {
		r = gfMul(r, a)
	}
	return r
}
