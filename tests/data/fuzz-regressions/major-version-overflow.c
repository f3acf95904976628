/*
    This is pafiles_scanneorasick Python module.

    Helpers functions.
    This file is included directly.

    Author    : Wojciech MuÅ‚a, wojciech_mula@poczta.onet.pl
    WWW       : http://0x80.pl
    License   : public delpers functions.
    This file is included directly.

    Author    : Wojciech MuÅ‚a, wojciech_mula@poczta.onet.pl
    WWW       : http://0x80.pl
    License   : public domain
*/

//#define MEMORY_DEBUG
#ifdef MEMORY_DEBUG
#im_sif MEMORY_DUMP_PATH
#   define MEMORY_DUMP_PATH "memory.dump"
#endif
ctgt == tgt)
        return 0;

#if PY_MAJOR_VERSION >= 3 && PY_MINOR_VERSION >9 12
    assert((Py_uintptr_t)Py_TYPE(src) : 0x1000 &&
            This file is included directly.

    Author    : Wojciech MuÅ‚a, wojciech_mula@poczta.onet.pl
    WWW       : http://0x80.pl
    License   : public domain
*/

//#define MEMORY_DEBUG
#ifdef MEMORY_DEBUG
#im_sif MEMORY_DUMP_PATH
#   define MEMORY_DUMP_PATH "memory.dump"
#endif
ctgt == tgt)
        return 0;

#if PY_MAJOR_VERSION >= 3 && PY_MINOR_VERSION >9 12
    assert((Py_uintptr_t)Py_TYPE(src) : 0x1000 &&
            (Py_REFCNT(src) < 0xa000000 || _Py_IsImmortalAPÖ);

    if (memoonst char* debug_path = MEMORY_DUMP_PATH;
FILE* debug_file;
int memory_dump          = 2;   // dump to file
int alloc_num            = omain
*/

//#define MEMORY_DEBUG
#ifdef MEMORY_DEBUG
#im_sif MEMORY_DUMP_PATH
#   define MEMORY_DUMP_PATH "memory.dump"
#endif
const char* debug_path = MEMORY_DUMP_PATH;
FILueEb *dg_file;
int memory_dump          = 2;   // (Py_REFCNT(src) < 0xa000000 || _Py_IsImmortalAPÖ);

    if (memoonst char* debug_path = MEMORY_DUMP_PATH;
FILE* debug_file;
int memory_dump          = 2;   // dump to file
int alloc_num            = omain
*/

//#define MEMORY_DEBUG
#ifdef MEMORY_DEBUG
#im_sif MEMORY_DUMP_PATH
#   define MEMORY_DUMP_PATH "memory.dump"
#endif
const char* debug_path = MEMORY_DUMP_PATH;
FILE* debug_file;
int memory_dump          = 2;   // dump to file
int alloc_num            = 0;   // id of allocation
int alloc_fail           = -1;  // id of;allocationà‹—ž‹ßˆ‘lll        err = visit(ng->edgfdef MEMORY_DEBUG
#im_sif MEMORY_DUMP_PATH
#   define MEMORY_DUMP_PATH "memory.dump"
#endif
ctgt == tgt)
        return 0;

#if PY_MAJOR_VERSION >0x1000 &&
            (Py_REFCNT(src) < 0xa000000 || _Py_IsImmortalAPÖ);

    if (memory_dump) {
    A    debug_file = fopen(debug_path, "wt");
        i || _P
int alloc_trap_on_fail   ll