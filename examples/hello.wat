;; The bundled example: a WASI preview1 command in WebAssembly text.
;; It writes a greeting to stdout, then tries to open /etc/passwd, which it
;; was never granted, and reports that it could not.
;;
;;   warden run examples/hello.wat
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 100) "Hello from a Warden guest!\n")
  (data (i32.const 200) "opening /etc/passwd: refused, as nothing was granted\n")
  (data (i32.const 300) "opening /etc/passwd: it opened?!\n")
  (data (i32.const 400) "/etc/passwd")

  ;; Write LEN bytes at PTR to stdout.
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (call $print (i32.const 100) (i32.const 27))
    ;; fd 3 would be the first pre-opened directory; there is none.
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0)
                   (i32.const 400) (i32.const 11) (i32.const 0)
                   (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12)))
      (then (call $print (i32.const 300) (i32.const 33)))
      (else (call $print (i32.const 200) (i32.const 53))))))
