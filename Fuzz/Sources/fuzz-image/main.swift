// libFuzzer target: ImageCodec.decode (PNG through libpng, JPEG through libjpeg-turbo, both via the CImageShim
// C shim) on arbitrary bytes, then the conversions ImageFolder loading applies (launch/fuzz.sh image).
// A decode either throws a one-line DataError naming the source and format, or returns an image whose sample
// count matches its size and which converts to 1 and 3 channels and to planar order.
import CFuzzMain
import DaftData

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let image: DecodedImage
    do {
        image = try ImageCodec.decode(bytes, source: "fuzz.img")
    } catch let error as DataError {
        precondition(error.message.hasPrefix("fuzz.img: ") && !error.message.contains("\n"),
                     "not a one-line error naming the source: \(error.message)")
        return 0
    } catch {
        fatalError("decode threw a non-DataError: \(error)")
    }
    precondition(image.width > 0 && image.height > 0 && (1...4).contains(image.channels), "bad decoded geometry")
    precondition(image.pixels.count == image.width * image.height * image.channels, "sample count mismatch")
    let grey = image.converted(toChannels: 1), rgb = image.converted(toChannels: 3)
    precondition(grey.pixels.count == image.width * image.height && rgb.pixels.count == 3 * grey.pixels.count,
                 "converted sample counts are wrong")
    precondition(image.planarPixels.count == image.pixels.count, "planar sample count mismatch")
    return 0
}
