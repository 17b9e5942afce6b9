package frames

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// extent is a byte range of the object: one fragment's value.
type extent struct {
	off    int64 // offset of the value, after the 8-byte item header
	length int64
}

// span is the fragments [first, end) of one frame.
type span struct{ first, end int }

// scanFragments reads the items of encapsulated Pixel Data whose value
// starts at off (PS3.5 A.4): the Basic Offset Table, then one item per
// fragment up to the Sequence Delimitation Item. Only item headers and the
// offset table are read; fragment values are skipped.
func (c *cursor) scanFragments(off int64) (bot []uint32, frags []extent, err error) {
	enc := encoding{order: binary.LittleEndian}
	h, err := c.readHeader(off, enc)
	if err != nil {
		return nil, nil, err
	}
	if h.tag != tagItem || h.length == undefinedLength {
		return nil, nil, fmt.Errorf("%w: encapsulated Pixel Data does not start with the Basic Offset Table item", ErrMalformed)
	}
	if h.length%4 != 0 {
		return nil, nil, fmt.Errorf("%w: Basic Offset Table of %d bytes is not a multiple of 4", ErrMalformed, h.length)
	}
	off += h.size
	if int64(h.length) > c.size-off {
		return nil, nil, fmt.Errorf("%w: Basic Offset Table of %d bytes overruns the stream", ErrTruncated, h.length)
	}
	if h.length > 0 {
		// The length is bounded by the bytes actually present.
		raw := make([]byte, h.length)
		if err := readAt(c.r, raw, off); err != nil {
			return nil, nil, fmt.Errorf("reading Basic Offset Table: %w", err)
		}
		bot = make([]uint32, len(raw)/4)
		for i := range bot {
			bot[i] = binary.LittleEndian.Uint32(raw[4*i:])
		}
	}
	off += int64(h.length)
	for {
		h, err := c.readHeader(off, enc)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case h.tag == tagSeqDelimitation:
			return bot, frags, nil
		case h.tag != tagItem || h.length == undefinedLength:
			return nil, nil, fmt.Errorf("%w: %s at offset %d where a fragment was expected", ErrMalformed, tagString(h.tag), off)
		}
		off += h.size
		if int64(h.length) > c.size-off {
			return nil, nil, fmt.Errorf("%w: fragment of %d bytes at offset %d overruns the stream", ErrTruncated, h.length, off)
		}
		frags = append(frags, extent{off: off, length: int64(h.length)})
		off += int64(h.length)
	}
}

// splitFrames tells which fragments make up each of n frames (PS3.5 A.4).
// With a Basic Offset Table, its entries are the offsets of each frame's
// first item from the first fragment's item. Without one, a single frame
// takes every fragment, n fragments are one per frame, and otherwise a frame
// starts at each fragment for which startsFrame is true (a JPEG SOI or JPEG
// 2000 SOC marker), which must give exactly n frames.
func splitFrames(bot []uint32, frags []extent, n int, startsFrame func(extent) (bool, error)) ([]span, error) {
	switch {
	case n < 1:
		return nil, fmt.Errorf("%w: %d frames", ErrMalformed, n)
	case len(frags) == 0:
		return nil, fmt.Errorf("%w: encapsulated Pixel Data without fragments", ErrMalformed)
	case len(frags) < n:
		return nil, fmt.Errorf("%w: %d fragments for %d frames", ErrMalformed, len(frags), n)
	}
	if len(bot) > 0 {
		return splitByOffsetTable(bot, frags, n)
	}
	if n == 1 {
		return []span{{0, len(frags)}}, nil
	}
	spans := make([]span, 0, n)
	if len(frags) == n {
		for i := range frags {
			spans = append(spans, span{i, i + 1})
		}
		return spans, nil
	}
	for i, f := range frags {
		ok, err := startsFrame(f)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if len(spans) == n {
			return nil, fmt.Errorf("%w: more than %d frames start in %d fragments and there is no Basic Offset Table", ErrMalformed, n, len(frags))
		}
		if len(spans) > 0 {
			spans[len(spans)-1].end = i
		} else if i != 0 {
			return nil, fmt.Errorf("%w: first fragment does not start a frame", ErrMalformed)
		}
		spans = append(spans, span{i, len(frags)})
	}
	if len(spans) != n {
		return nil, fmt.Errorf("%w: cannot tell %d frames apart in %d fragments without a Basic Offset Table", ErrMalformed, n, len(frags))
	}
	return spans, nil
}

func splitByOffsetTable(bot []uint32, frags []extent, n int) ([]span, error) {
	if len(bot) != n {
		return nil, fmt.Errorf("%w: Basic Offset Table has %d entries for %d frames", ErrMalformed, len(bot), n)
	}
	// Offset of each fragment's item from the first fragment's item.
	starts := make([]int64, len(frags))
	for i, f := range frags {
		starts[i] = f.off - 8 - (frags[0].off - 8)
	}
	spans := make([]span, n)
	for i, o := range bot {
		j := sort.Search(len(starts), func(k int) bool { return starts[k] >= int64(o) })
		if j == len(starts) || starts[j] != int64(o) {
			return nil, fmt.Errorf("%w: Basic Offset Table entry %d (%d) is not the start of a fragment", ErrMalformed, i, o)
		}
		if i == 0 && j != 0 {
			return nil, fmt.Errorf("%w: Basic Offset Table does not start at the first fragment", ErrMalformed)
		}
		if i > 0 && j <= spans[i-1].first {
			return nil, fmt.Errorf("%w: Basic Offset Table entries are not increasing", ErrMalformed)
		}
		spans[i].first = j
		if i > 0 {
			spans[i-1].end = j
		}
	}
	spans[n-1].end = len(frags)
	return spans, nil
}

// startsCodestream reports whether a fragment begins with a JPEG Start Of
// Image marker (ISO/IEC 10918-1 B.2.1, also JPEG-LS) or a JPEG 2000 Start Of
// Codestream marker (ISO/IEC 15444-1 A.4.1).
func (c *cursor) startsCodestream(f extent) (bool, error) {
	if f.length < 2 {
		return false, nil
	}
	b, err := c.peek(f.off, 2)
	if err != nil {
		return false, err
	}
	return b[0] == 0xFF && (b[1] == 0xD8 || b[1] == 0x4F), nil
}

// readExtents reads and concatenates extents.
func readExtents(r io.ReaderAt, es []extent) ([]byte, error) {
	var n int64
	for _, e := range es {
		n += e.length
	}
	buf := make([]byte, n)
	var at int64
	for _, e := range es {
		if err := readAt(r, buf[at:at+e.length], e.off); err != nil {
			return nil, err
		}
		at += e.length
	}
	return buf, nil
}

// readAt fills b from off, taking io.EOF with a full read as success
// (io.ReaderAt allows either).
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %d of %d bytes at offset %d", ErrTruncated, n, len(b), off)
	}
	return fmt.Errorf("reading %d bytes at offset %d: %w", len(b), off, err)
}
