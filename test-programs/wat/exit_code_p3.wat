;; A WASI 0.3 command component (component-model-async; `run` is an
;; async func, lifted synchronously) that ends through
;; wasi:cli/exit#exit-with-code with the number of its arguments plus 40
;; (argv[0] included), read through wasi:cli/environment#get-arguments.
;; Rust's std only imports `exit` (ok/err), so this is written by hand.
(component
  (import "wasi:cli/environment@0.3.0" (instance $env
    (export "get-arguments" (func (result (list string))))
  ))
  (import "wasi:cli/exit@0.3.0" (instance $exit
    (export "exit-with-code" (func (param "status-code" u8)))
  ))

  (core module $mem
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 1024))
    ;; A bump allocator is enough for one call.
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $m (instantiate $mem))

  (core func $get_arguments (canon lower (func $env "get-arguments")
    (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (core func $exit_with_code (canon lower (func $exit "exit-with-code")))

  (core module $main
    (import "host" "get-arguments" (func $args (param i32)))
    (import "host" "exit-with-code" (func $exit (param i32)))
    (import "host" "memory" (memory 1))
    (func (export "run") (result i32)
      ;; The list comes back at address 0 as (pointer, length).
      (call $args (i32.const 0))
      (call $exit (i32.add (i32.const 40) (i32.load (i32.const 4))))
      unreachable))
  (core instance $host
    (export "memory" (memory $m "memory"))
    (export "get-arguments" (func $get_arguments))
    (export "exit-with-code" (func $exit_with_code)))
  (core instance $i (instantiate $main (with "host" (instance $host))))

  (func $run async (result (result)) (canon lift (core func $i "run")))
  (instance $r (export "run" (func $run)))
  (export "wasi:cli/run@0.3.0" (instance $r))
)
