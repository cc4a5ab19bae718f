// Child processes do the work; two at a time keeps a 2-core machine busy without starving the kill timing.
[assembly: Parallelize(Workers = 2, Scope = ExecutionScope.MethodLevel)]
