"""The phases of the FxP-QNet search, one module each (docs/algorithm.md says each exactly).

Each phase is a set of functions of a `PrecisionSearch` (fxpq_keras/search/adaptation.py): they read
and change its state and measure policies through its evaluation engine (search/engine.py). The
order they run in is written in one place, `PrecisionSearch.advance` and `PrecisionSearch.finish`:

1. `start`: the start policy at max_bits; the fracs of activations stock ops hold at 8 bits.
2. `uniform`: the uniform floor (the lowest uniform width within the budget, by bisection), and
   with mechanism 2 off, the whole search (every data structure lowered together).
3. `ram_first` (`ram_first=True`, before 2): the RAM peak's tied activations to one byte, group by
   group (`peak_groups` forms the groups; in the greedy, one group step competes with the single steps).
4. `jump`: the fast start (every data structure probed alone, then moved together).
5. `greedy`: gradual lowering, the step with the most bytes (or bits) per added KL first.
6. `tail` (device objective): steps that save no byte, by the paper bits they save.
7. `walkback`: the latest accepted policy within the budget on the validation copies.
8. `uniform` again: continue from the uniform floor when it is smaller than what lowering found.
"""
