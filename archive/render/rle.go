package render

import (
	"encoding/binary"
	"fmt"
)

// decodeRLE decodes one RLE Lossless frame (PS3.5 Annex G) of rows×cols
// pixels of spp samples of bitsAllocated bits, and returns it as native
// pixel data: little endian, samples interleaved (Planar Configuration 0).
//
// The frame starts with a 64-byte header: the number of segments and up to
// 15 segment offsets (G.5). Segment k holds byte k of the composite pixel
// code (G.2): for each sample in turn, its most significant byte first. Each
// segment is a PackBits byte stream (G.3.1). A segment cannot expand beyond
// 64 times its length, so a segment too short for rows×cols bytes is refused
// before anything is allocated.
func decodeRLE(b []byte, rows, cols, spp, bitsAllocated int) ([]byte, error) {
	if bitsAllocated%8 != 0 || bitsAllocated == 0 || spp < 1 {
		return nil, fmt.Errorf("%w: RLE with %d samples of %d bits", ErrUnsupportedImage, spp, bitsAllocated)
	}
	bytesPerSample := bitsAllocated / 8
	nseg := spp * bytesPerSample
	if nseg > 15 {
		return nil, fmt.Errorf("%w: RLE needs %d segments, at most 15 allowed", ErrUnsupportedImage, nseg)
	}
	if len(b) < 64 {
		return nil, fmt.Errorf("%w: RLE header of %d bytes", ErrDecode, len(b))
	}
	if got := int(binary.LittleEndian.Uint32(b)); got != nseg {
		return nil, fmt.Errorf("%w: RLE frame has %d segments, want %d", ErrDecode, got, nseg)
	}
	n := rows * cols
	if rows < 1 || cols < 1 || n/cols != rows {
		return nil, fmt.Errorf("%w: %d×%d pixels", ErrDecode, cols, rows)
	}
	offs := make([]int, nseg+1)
	for i := range nseg {
		offs[i] = int(binary.LittleEndian.Uint32(b[4+4*i:]))
	}
	offs[nseg] = len(b)
	for i := range nseg {
		if offs[i] < 64 || offs[i] > offs[i+1] {
			return nil, fmt.Errorf("%w: RLE segment %d offset %d out of order", ErrDecode, i, offs[i])
		}
		if n > 64*(offs[i+1]-offs[i])+64 {
			return nil, fmt.Errorf("%w: RLE segment %d of %d bytes cannot hold %d pixels", ErrDecode, i, offs[i+1]-offs[i], n)
		}
	}
	out := make([]byte, n*nseg)
	seg := make([]byte, n)
	for i := range nseg {
		if err := unpackBits(seg, b[offs[i]:offs[i+1]]); err != nil {
			return nil, fmt.Errorf("RLE segment %d: %w", i, err)
		}
		// Segment i is byte (bytesPerSample-1-i%bytesPerSample) of sample
		// i/bytesPerSample, in little endian output.
		sample, msb := i/bytesPerSample, i%bytesPerSample
		pos := sample*bytesPerSample + (bytesPerSample - 1 - msb)
		stride := nseg
		for p, v := range seg {
			out[p*stride+pos] = v
		}
	}
	return out, nil
}

// unpackBits fills dst from a PackBits stream (PS3.5 G.3.1): a header byte n
// is followed by n+1 literal bytes when 0 ≤ n ≤ 127, by one byte repeated
// 1-n times when -127 ≤ n ≤ -1, and by nothing when n is -128. Output beyond
// what dst holds, and input after it is full (padding), are ignored.
func unpackBits(dst, src []byte) error {
	o := 0
	for i := 0; o < len(dst); {
		if i >= len(src) {
			return fmt.Errorf("%w: PackBits stream ends after %d of %d bytes", ErrDecode, o, len(dst))
		}
		n := int(int8(src[i]))
		i++
		switch {
		case n >= 0:
			if i+n+1 > len(src) {
				return fmt.Errorf("%w: PackBits literal run overruns the segment", ErrDecode)
			}
			// A run past the end of the frame is clipped.
			o += copy(dst[o:], src[i:i+n+1])
			i += n + 1
		case n != -128:
			if i >= len(src) {
				return fmt.Errorf("%w: PackBits replicate run overruns the segment", ErrDecode)
			}
			v := src[i]
			i++
			for k := 0; k < 1-n && o < len(dst); k++ {
				dst[o] = v
				o++
			}
		}
	}
	return nil
}
