// See fuzz_main.c.
#ifndef DAFT_FUZZ_MAIN_H
#define DAFT_FUZZ_MAIN_H
#endif
