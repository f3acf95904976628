; The fields of one struct body. Run on the body's field_declaration_list with a start depth of
; two, so that fields inside #if blocks count and nested struct bodies do not.
(field_declaration
  type: (_) @field.type
  declarator: (_) @field.declarator) @field
