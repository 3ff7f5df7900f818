"""The execution of a trial, above `bench.protocol`: what defines a trial (`spec`), its context
built once (`context`), the one training loop (`train`), the teacher cache (`teacher`), one trial
(`trial`), Ray Tune or inline execution (`runner`), the rows and trials.csv (`results`), and the
scalability points and search space. Imports only `bench.protocol`."""
