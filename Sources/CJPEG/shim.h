// libjpeg-turbo's libjpeg API (Debian libjpeg62-turbo-dev). jpeglib.h needs stdio.h (FILE) first.
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
