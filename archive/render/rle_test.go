package render

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// encodeRLE is a small RLE Lossless encoder (PS3.5 Annex G) for tests: it
// splits little endian interleaved pixels into one segment per byte of each
// sample, most significant first (G.2), and PackBits-encodes each (G.3.1).
func encodeRLE(px []byte, n, spp, bytesPerSample int) []byte {
	nseg := spp * bytesPerSample
	var segs [][]byte
	for s := range spp {
		for k := bytesPerSample - 1; k >= 0; k-- {
			plane := make([]byte, n)
			for i := range n {
				plane[i] = px[(i*spp+s)*bytesPerSample+k]
			}
			segs = append(segs, packBits(plane))
		}
	}
	hdr := make([]byte, 64)
	binary.LittleEndian.PutUint32(hdr, uint32(nseg))
	off := 64
	for i, s := range segs {
		binary.LittleEndian.PutUint32(hdr[4+4*i:], uint32(off))
		off += len(s)
	}
	return append(hdr, bytes.Join(segs, nil)...)
}

// packBits encodes runs of 3 or more equal bytes as replicate runs and the
// rest as literal runs, at most 128 bytes each, padded to even length.
func packBits(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && j-i < 128 && b[j] == b[i] {
			j++
		}
		if j-i >= 3 {
			out = append(out, byte(int8(1-(j-i))), b[i])
			i = j
			continue
		}
		j = i
		for j < len(b) && j-i < 128 && !(j+2 < len(b) && b[j] == b[j+1] && b[j] == b[j+2]) {
			j++
		}
		if j == i {
			j++
		}
		out = append(out, byte(j-i-1))
		out = append(out, b[i:j]...)
		i = j
	}
	if len(out)%2 == 1 {
		out = append(out, 0x80) // no-op padding
	}
	return out
}

func TestDecodeRLE_RoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		rows, cols, spp, bytes int
	}{
		{"8-bit grayscale", 7, 9, 1, 1},
		{"16-bit grayscale", 5, 300, 1, 2},
		{"8-bit RGB", 4, 6, 3, 1},
		{"32-bit grayscale", 3, 3, 1, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := tt.rows * tt.cols
			px := make([]byte, n*tt.spp*tt.bytes)
			for i := range px {
				if i%5 < 3 {
					px[i] = byte(i / 17) // runs
				} else {
					px[i] = byte(i * 31)
				}
			}
			got, err := decodeRLE(encodeRLE(px, n, tt.spp, tt.bytes), tt.rows, tt.cols, tt.spp, 8*tt.bytes)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(px, got); diff != "" {
				t.Errorf("decodeRLE mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRLE_Errors(t *testing.T) {
	t.Parallel()
	good := encodeRLE(make([]byte, 16), 16, 1, 1)
	wrongCount := bytes.Clone(good)
	wrongCount[0] = 2
	tests := []struct {
		name string
		data []byte
		rows int
		want error
	}{
		{"short header", good[:10], 4, ErrDecode},
		{"segment count differs", wrongCount, 4, ErrDecode},
		{"segment too short for the frame", good, 400, ErrDecode},
		{"stream ends early", append(good[:64:64], 0x05, 1, 2), 4, ErrDecode},
	}
	for _, tt := range tests {
		if _, err := decodeRLE(tt.data, tt.rows, 4, 1, 8); !errors.Is(err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// FuzzDecodeRLE checks that the RLE decoder never panics and allocates in
// proportion to its input, whatever the frame size claimed.
func FuzzDecodeRLE(f *testing.F) {
	f.Add(encodeRLE([]byte{1, 1, 1, 2, 3, 4, 5, 5}, 4, 1, 2), 2, 2, 1, 16)
	f.Add(encodeRLE(make([]byte, 27), 9, 3, 1), 3, 3, 3, 8)
	f.Fuzz(func(t *testing.T, b []byte, rows, cols, spp, bits int) {
		if rows > 1<<16 || cols > 1<<16 || rows < 0 || cols < 0 {
			return // Rows and Columns are US (PS3.3 C.7.6.3)
		}
		out, err := decodeRLE(b, rows, cols, spp, bits)
		if err != nil {
			return
		}
		if len(out) > 64*len(b)+64*15 {
			t.Fatalf("%d bytes decoded from %d", len(out), len(b))
		}
	})
}
