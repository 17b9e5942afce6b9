package archive

import (
	"bytes"
	"crypto/sha256"
	"io"
	"testing"
	"testing/iotest"
)

// copyBuffered leaves an object that fits in its buffer whole there (Spool
// parses the header from it), at every size around the buffer's and
// whatever pieces the source hands out.
func TestCopyBuffered_BufferHoldsWhatFits(t *testing.T) {
	t.Parallel()
	const size = 8
	readers := map[string]func(io.Reader) io.Reader{
		"as is":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	}
	for _, n := range []int{0, 1, size - 1, size, size + 1, 2*size - 1, 2 * size, 2*size + 1, 5 * size} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(i*7 + 1)
		}
		for name, wrap := range readers {
			buf := bytes.Repeat([]byte{0xEE}, size)
			var file bytes.Buffer
			h := sha256.New()
			got, err := copyBuffered(&file, h, wrap(bytes.NewReader(src)), buf)
			if err != nil {
				t.Fatalf("%d bytes, %s: %v", n, name, err)
			}
			if got != int64(n) || !bytes.Equal(file.Bytes(), src) {
				t.Errorf("%d bytes, %s: copied %d bytes, file %x", n, name, got, file.Bytes())
			}
			if sum := sha256.Sum256(src); !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Errorf("%d bytes, %s: wrong hash", n, name)
			}
			if n <= size && !bytes.Equal(buf[:n], src) {
				t.Errorf("%d bytes, %s: buffer holds %x, want the whole object %x", n, name, buf[:n], src)
			}
		}
	}
}
