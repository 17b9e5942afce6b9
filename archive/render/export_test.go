package render

// EncodeRLE exposes the test RLE encoder to the external tests.
var EncodeRLE = encodeRLE
