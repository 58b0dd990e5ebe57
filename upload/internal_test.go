package upload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestCleanFilename(t *testing.T) {
	long := strings.Repeat("é", 150) + ".jpeg"
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"photo.jpg", "photo.jpg", true},
		{"  spaced name.txt ", "spaced name.txt", true},
		{"../../etc/passwd", "passwd", true},
		{`C:\Users\me\doc.pdf`, "doc.pdf", true},
		{"evil\u202egpj.exe", "evilgpj.exe", true}, // bidirectional override removed
		{"line\nbreak\x00.txt", "linebreak.txt", true},
		{"", "", false},
		{"..", "", false},
		{"dir/", "", false},
		{"\xff\xfe.txt", "", false},
		{long, strings.Repeat("é", 97) + ".jpeg", true},
	} {
		got, ok := cleanFilename(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cleanFilename(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && len(got) > maxNameBytes {
			t.Errorf("cleanFilename(%q) is %d bytes long", tc.in, len(got))
		}
	}
}

func TestCleanContentType(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"image/PNG", "image/png", true},
		{"text/plain;charset=utf-8", "text/plain; charset=utf-8", true},
		{"text", "", false},
		{"a b/c", "", false},
	} {
		got, ok := cleanContentType(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cleanContentType(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSlotID(t *testing.T) {
	id := newID()
	if !validID(id) {
		t.Fatalf("newID() = %q is not valid", id)
	}
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/" + id + "/f.txt", true},
		{"/upload/" + id + "/f.txt", true},
		{"/" + id + "/", false},
		{"/" + id, false},
		{"/../" + id[1:] + "/f", false},
		{"/f.txt", false},
	} {
		got, ok := slotID(tc.path)
		if ok != tc.ok || (ok && got != id) {
			t.Errorf("slotID(%q) = %q, %v", tc.path, got, ok)
		}
	}
}

func TestDirStore(t *testing.T) {
	ctx := context.Background()
	d := DirStore{Dir: t.TempDir() + "/files"}
	if err := d.Put(ctx, "k1", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	f, err := d.Open(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello" {
		t.Errorf("read %q", b)
	}
	if err := d.Put(ctx, "k2", strings.NewReader("hell"), 5); !errors.Is(err, ErrSize) {
		t.Errorf("Put of fewer bytes: %v", err)
	}
	if err := d.Put(ctx, "k2", bytes.NewReader(make([]byte, 6)), 5); !errors.Is(err, ErrSize) {
		t.Errorf("Put of more bytes: %v", err)
	}
	if _, err := d.Open(ctx, "k2"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open after failed Puts: %v", err)
	}
	for _, key := range []string{"../x", "a/b", "", ".hidden"} {
		if err := d.Put(ctx, key, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put with key %q succeeded", key)
		}
		if _, err := d.Open(ctx, key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open with key %q: %v", key, err)
		}
	}
	if err := d.Delete(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "k1"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if entries, err := os.ReadDir(d.Dir); err != nil || len(entries) != 0 {
		t.Errorf("left in the folder: %v, %v", entries, err)
	}
}
