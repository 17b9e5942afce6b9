package mllp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	vt = "\x0b"
	fs = "\x1c"
	cr = "\r"
)

func frame(msg string) string { return vt + msg + fs + cr }

// result is one ReadMessage outcome, for table tests.
type result struct {
	msg string
	err error // compared with errors.Is
}

// readAll reads frames until EOF. Every result consumes at least one byte
// of the input (a start block, at least), so more than inputLen+1 results
// means the reader is stuck.
func readAll(r *Reader, inputLen int) []result {
	var out []result
	for {
		msg, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		out = append(out, result{string(msg), err})
		if err != nil && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrTruncatedFrame) {
			return out
		}
		if len(out) > inputLen+1 {
			panic("reader does not make progress")
		}
	}
}

func TestReader_ReadMessage(t *testing.T) {
	tests := []struct {
		name  string
		input string
		max   int
		want  []result
	}{
		{"one frame", frame("MSH|a"), 0, []result{{"MSH|a", nil}}},
		{"two frames", frame("A") + frame("B"), 0, []result{{"A", nil}, {"B", nil}}},
		{"empty frame", frame(""), 0, []result{{"", nil}}},
		{"nothing", "", 0, nil},
		{"garbage between frames", "\r\nhello" + frame("A") + "\n\n\x00" + frame("B") + "tail", 0,
			[]result{{"A", nil}, {"B", nil}}},
		{"end block without CR", vt + "A" + fs + vt + "B" + fs, 0, []result{{"A", nil}, {"B", nil}}},
		{"segments with CR inside", frame("MSH|x\rPID|1\r"), 0, []result{{"MSH|x\rPID|1\r", nil}}},
		{"stream ends inside frame", frame("A") + vt + "MSH|partial", 0,
			[]result{{"A", nil}, {"", ErrTruncatedFrame}}},
		{"start block inside frame", vt + "lost" + frame("B"), 0,
			[]result{{"", ErrTruncatedFrame}, {"B", nil}}},
		{"oversize frame then a good one", frame(strings.Repeat("x", 11)) + frame("ok"), 10,
			[]result{{"", ErrFrameTooLarge}, {"ok", nil}}},
		{"frame at the limit", frame(strings.Repeat("x", 10)), 10, []result{{strings.Repeat("x", 10), nil}}},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/onebyte=%v", tt.name, oneByte), func(t *testing.T) {
				var in io.Reader = strings.NewReader(tt.input)
				if oneByte {
					in = iotest.OneByteReader(in)
				}
				got := readAll(NewReader(in, tt.max), len(tt.input))
				if len(got) != len(tt.want) {
					t.Fatalf("got %d results %v, want %d %v", len(got), got, len(tt.want), tt.want)
				}
				for i := range got {
					if got[i].msg != tt.want[i].msg || !errors.Is(got[i].err, tt.want[i].err) ||
						(got[i].err == nil) != (tt.want[i].err == nil) {
						t.Errorf("result %d = %q, %v; want %q, %v", i, got[i].msg, got[i].err, tt.want[i].msg, tt.want[i].err)
					}
				}
			})
		}
	}
}

func TestReader_FrameTooLargeError(t *testing.T) {
	big := "MSH|^~\\&|APP|FAC\r" + strings.Repeat("x", 3*HeadSize)
	_, err := NewReader(strings.NewReader(frame(big)), 100).ReadMessage()
	var tooLarge *FrameTooLargeError
	if !errors.As(err, &tooLarge) {
		t.Fatalf("error = %v, want *FrameTooLargeError", err)
	}
	if got, want := tooLarge.Size, len(big); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if got, want := tooLarge.Limit, 100; got != want {
		t.Errorf("Limit = %d, want %d", got, want)
	}
	if got, want := string(tooLarge.Head), big[:HeadSize]; got != want {
		t.Errorf("Head has %d bytes, want the first %d of the frame", len(got), len(want))
	}
	if strings.Contains(err.Error(), "MSH") {
		t.Errorf("error text %q quotes content", err)
	}
}

func TestReader_DefaultLimit(t *testing.T) {
	in := frame(strings.Repeat("x", DefaultMaxMessageSize+1))
	if _, err := NewReader(strings.NewReader(in), 0).ReadMessage(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("error = %v, want ErrFrameTooLarge", err)
	}
}

func TestWriteFrame(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte("MSH|x\r")); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "\x0bMSH|x\r\x1c\r"; got != want {
		t.Errorf("frame = %q, want %q", got, want)
	}
	for _, bad := range []string{"a\x0bb", "a\x1cb"} {
		if err := WriteFrame(&buf, []byte(bad)); !errors.Is(err, ErrInvalidContent) {
			t.Errorf("WriteFrame(%q) error = %v, want ErrInvalidContent", bad, err)
		}
	}
}

// FuzzReader checks that the reader never panics, never returns content
// over the limit or containing block characters, and that frames written
// by WriteFrame read back unchanged whatever precedes them.
func FuzzReader(f *testing.F) {
	f.Add([]byte(frame("MSH|a")+"junk"+frame("B")), []byte("MSH|^~\\&|A\rPID|1\r"))
	f.Add([]byte(vt+"x"+vt+"y"+fs), []byte(""))
	f.Add([]byte(fs+cr+vt), []byte(strings.Repeat("z", 40)))
	f.Fuzz(func(t *testing.T, stream, msg []byte) {
		const limit = 32
		for _, res := range readAll(NewReader(bytes.NewReader(stream), limit), len(stream)) {
			if len(res.msg) > limit {
				t.Fatalf("message of %d bytes over limit %d", len(res.msg), limit)
			}
			if strings.ContainsAny(res.msg, vt+fs) {
				t.Fatalf("message %q contains a block character", res.msg)
			}
		}
		msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte(vt), nil), []byte(fs), nil)
		if len(msg) > limit {
			msg = msg[:limit]
		}
		// Garbage before a frame is skipped; strip block characters from it
		// so that it cannot open a frame of its own.
		garbage := bytes.ReplaceAll(stream, []byte(vt), nil)
		var buf bytes.Buffer
		buf.Write(garbage)
		if err := WriteFrame(&buf, msg); err != nil {
			t.Fatal(err)
		}
		got := readAll(NewReader(&buf, limit), buf.Len())
		want := []result{{string(msg), nil}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip after %q: got %v, want %v", garbage, got, want)
		}
	})
}
