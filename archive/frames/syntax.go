package frames

import "encoding/binary"

// Transfer Syntax UIDs (PS3.6 Annex A) that the archive knows by name.
const (
	ImplicitVRLittleEndian                         = "1.2.840.10008.1.2"
	ExplicitVRLittleEndian                         = "1.2.840.10008.1.2.1"
	EncapsulatedUncompressedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.98"
	DeflatedExplicitVRLittleEndian                 = "1.2.840.10008.1.2.1.99"
	ExplicitVRBigEndian                            = "1.2.840.10008.1.2.2"
	JPEGBaseline8Bit                               = "1.2.840.10008.1.2.4.50"
	JPEGExtended12Bit                              = "1.2.840.10008.1.2.4.51"
	JPEGLossless                                   = "1.2.840.10008.1.2.4.57"
	JPEGLosslessSV1                                = "1.2.840.10008.1.2.4.70"
	JPEGLSLossless                                 = "1.2.840.10008.1.2.4.80"
	JPEGLSNearLossless                             = "1.2.840.10008.1.2.4.81"
	JPEG2000Lossless                               = "1.2.840.10008.1.2.4.90"
	JPEG2000                                       = "1.2.840.10008.1.2.4.91"
	HTJ2KLossless                                  = "1.2.840.10008.1.2.4.201"
	HTJ2KLosslessRPCL                              = "1.2.840.10008.1.2.4.202"
	HTJ2K                                          = "1.2.840.10008.1.2.4.203"
	RLELossless                                    = "1.2.840.10008.1.2.5"
)

var syntaxNames = map[string]string{
	ImplicitVRLittleEndian:                         "Implicit VR Little Endian",
	ExplicitVRLittleEndian:                         "Explicit VR Little Endian",
	EncapsulatedUncompressedExplicitVRLittleEndian: "Encapsulated Uncompressed Explicit VR Little Endian",
	DeflatedExplicitVRLittleEndian:                 "Deflated Explicit VR Little Endian",
	ExplicitVRBigEndian:                            "Explicit VR Big Endian",
	JPEGBaseline8Bit:                               "JPEG Baseline (Process 1)",
	JPEGExtended12Bit:                              "JPEG Extended (Process 2 & 4)",
	JPEGLossless:                                   "JPEG Lossless, Non-Hierarchical (Process 14)",
	JPEGLosslessSV1:                                "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
	JPEGLSLossless:                                 "JPEG-LS Lossless",
	JPEGLSNearLossless:                             "JPEG-LS Lossy (Near-Lossless)",
	JPEG2000Lossless:                               "JPEG 2000 Image Compression (Lossless Only)",
	JPEG2000:                                       "JPEG 2000 Image Compression",
	HTJ2KLossless:                                  "High-Throughput JPEG 2000 (Lossless Only)",
	HTJ2KLosslessRPCL:                              "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
	HTJ2K:                                          "High-Throughput JPEG 2000",
	RLELossless:                                    "RLE Lossless",
}

// SyntaxName returns the name of a Transfer Syntax (PS3.6 Annex A), or the
// UID itself when it is not one the archive knows.
func SyntaxName(uid string) string {
	if n, ok := syntaxNames[uid]; ok {
		return n
	}
	return uid
}

// IsNative reports whether a Transfer Syntax stores pixel data natively, as
// one defined-length value (PS3.5 8.1.1), rather than encapsulated in
// fragments (PS3.5 A.4).
func IsNative(uid string) bool {
	switch uid {
	case ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian:
		return true
	}
	return false
}

// encoding is how the data set of a Transfer Syntax is encoded (PS3.5 7.1).
// Syntaxes the archive does not know are taken to be explicit VR little
// endian, as every encapsulated syntax is (PS3.5 A.4).
type encoding struct {
	implicit bool
	order    binary.ByteOrder
}

func encodingOf(uid string) encoding {
	switch uid {
	case ImplicitVRLittleEndian:
		return encoding{implicit: true, order: binary.LittleEndian}
	case ExplicitVRBigEndian:
		return encoding{order: binary.BigEndian}
	}
	return encoding{order: binary.LittleEndian}
}
