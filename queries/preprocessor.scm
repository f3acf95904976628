; Preprocessor facts. Run with a shallow start depth: these lines live at file scope or inside
; #if blocks, so the cursor never needs to enter function bodies or data tables.

; #include "x.h" links the files of one module; <x.h> names system and Python headers.
(preproc_include
  path: [(string_literal) (system_lib_string)] @include.path)

; Object-like macros: module names, version flags (#define IS_PY3K), init helpers.
(preproc_def
  name: (identifier) @macro.name
  value: (preproc_arg)? @macro.body) @macro.definition

; Function-like macros: MOD_INIT(name) style module heads, token-pasting helpers.
(preproc_function_def
  name: (identifier) @macro.name
  parameters: (preproc_params) @macro.params
  value: (preproc_arg)? @macro.body) @macro.definition
