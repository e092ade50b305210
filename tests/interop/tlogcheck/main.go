// Command tlogcheck checks Filiera checkpoints and proofs with Go's golang.org/x/mod/sumdb
// note and tlog packages, the reference the protocol names (PROTOCOL.md §5). It reads one JSON
// document on stdin and prints one JSON verdict per check on stdout.
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"tree_size"`
	LeafHash string   `json:"leaf_hash"`
	Hashes   []string `json:"hashes"`
}

type consistency struct {
	From   int64    `json:"from"`
	To     int64    `json:"to"`
	Hashes []string `json:"hashes"`
	// Roots come from the checkpoints the caller holds, by tree size.
}

type input struct {
	Vkey        string            `json:"vkey"`
	Checkpoints map[string]string `json:"checkpoints"` // tree size -> signed note
	Inclusion   []inclusion       `json:"inclusion"`
	Consistency []consistency     `json:"consistency"`
}

type tree struct {
	origin string
	size   int64
	root   tlog.Hash
}

func hashes(hs []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("bad hash %q", h)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// parseCheckpoint reads a C2SP tlog-checkpoint body (origin, size, base64 root); tlog.ParseTree
// only accepts the go.sum database's own origin line.
func parseCheckpoint(text string) (tree, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return tree{}, fmt.Errorf("malformed checkpoint")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || lines[1] != strconv.FormatInt(n, 10) {
		return tree{}, fmt.Errorf("malformed size")
	}
	r, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(r) != tlog.HashSize {
		return tree{}, fmt.Errorf("malformed root")
	}
	var t tree
	t.origin, t.size = lines[0], n
	copy(t.root[:], r)
	return t, nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	verifier, err := note.NewVerifier(in.Vkey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vkey:", err)
		os.Exit(2)
	}
	trees := map[int64]tree{}
	out := json.NewEncoder(os.Stdout)
	for size, text := range in.Checkpoints {
		n, err := note.Open([]byte(text), note.VerifierList(verifier))
		res := map[string]any{"check": "checkpoint", "size": size, "ok": err == nil}
		if err == nil {
			t, perr := parseCheckpoint(n.Text)
			if perr != nil || strconv.FormatInt(t.size, 10) != size || t.origin != verifier.Name() {
				res["ok"] = false
				res["error"] = fmt.Sprint("body: ", perr)
			} else {
				trees[t.size] = t
			}
		} else {
			res["error"] = err.Error()
		}
		out.Encode(res)
	}
	for _, p := range in.Inclusion {
		res := map[string]any{"check": "inclusion", "index": p.Index, "tree_size": p.TreeSize}
		t, ok := trees[p.TreeSize]
		proof, err := hashes(p.Hashes)
		leaf, lerr := hashes([]string{p.LeafHash})
		switch {
		case !ok:
			res["ok"], res["error"] = false, "no verified checkpoint of that size"
		case err != nil || lerr != nil:
			res["ok"], res["error"] = false, "bad hash encoding"
		default:
			cerr := tlog.CheckRecord(tlog.RecordProof(proof), t.size, t.root, p.Index, leaf[0])
			res["ok"] = cerr == nil
			if cerr != nil {
				res["error"] = cerr.Error()
			}
		}
		out.Encode(res)
	}
	for _, p := range in.Consistency {
		res := map[string]any{"check": "consistency", "from": p.From, "to": p.To}
		old, ok1 := trees[p.From]
		cur, ok2 := trees[p.To]
		proof, err := hashes(p.Hashes)
		switch {
		case !ok1 || !ok2:
			res["ok"], res["error"] = false, "no verified checkpoint of those sizes"
		case err != nil:
			res["ok"], res["error"] = false, "bad hash encoding"
		default:
			cerr := tlog.CheckTree(tlog.TreeProof(proof), cur.size, cur.root, old.size, old.root)
			res["ok"] = cerr == nil
			if cerr != nil {
				res["error"] = cerr.Error()
			}
		}
		out.Encode(res)
	}
}
