// Command cosigcheck opens Filiera's cosigned checkpoints with Go's golang.org/x/mod/sumdb/note,
// the reference PROTOCOL.md §5 names, plus a cosignature/v1 verifier written here from the C2SP
// tlog-cosignature text alone (key ID with type 0x04, timestamped Ed25519 signature over
// "cosignature/v1\ntime <t>\n" and the note text). It reads one JSON document on stdin and
// prints one JSON verdict per note on stdout.
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

type input struct {
	LedgerVkey   string   `json:"ledger_vkey"`
	WitnessVkeys []string `json:"witness_vkeys"`
	Notes        []string `json:"notes"`
}

type verdict struct {
	OK       bool     `json:"ok"`
	Verified []string `json:"verified"`
	Error    string   `json:"error,omitempty"`
}

// cosigner verifies cosignature/v1 signatures by one witness key.
type cosigner struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (c *cosigner) Name() string    { return c.name }
func (c *cosigner) KeyHash() uint32 { return c.hash }

func (c *cosigner) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(c.key, m, sig[8:])
}

func parseCosigner(vkey string) (*cosigner, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("malformed vkey %q", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 0x04 {
		return nil, fmt.Errorf("not a cosignature/v1 key: %q", vkey)
	}
	h := sha256.Sum256(append([]byte(parts[0]+"\n\x04"), raw[1:]...))
	if hex.EncodeToString(h[:4]) != parts[1] {
		return nil, fmt.Errorf("key ID of %q does not match", vkey)
	}
	return &cosigner{name: parts[0], hash: binary.BigEndian.Uint32(h[:4]), key: ed25519.PublicKey(raw[1:])}, nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ledger, err := note.NewVerifier(in.LedgerVkey)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	verifiers := []note.Verifier{ledger}
	for _, vkey := range in.WitnessVkeys {
		c, err := parseCosigner(vkey)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		verifiers = append(verifiers, c)
	}
	out := json.NewEncoder(os.Stdout)
	for _, text := range in.Notes {
		n, err := note.Open([]byte(text), note.VerifierList(verifiers...))
		v := verdict{OK: err == nil, Verified: []string{}}
		if err != nil {
			v.Error = err.Error()
		} else {
			for _, sig := range n.Sigs {
				v.Verified = append(v.Verified, sig.Name)
			}
		}
		if err := out.Encode(v); err != nil {
			os.Exit(2)
		}
	}
}
