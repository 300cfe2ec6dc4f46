import random

import pytest

from sw import isa


def test_fields_of_each_instruction_are_disjoint_and_fit():
    for instr in isa.INSTRUCTIONS.values():
        used = 0
        for f in instr.all_fields:
            assert f.lsb + f.width <= isa.INSTR_BITS, (instr.name, f.name)
            assert used & f.mask == 0, (instr.name, f.name)
            used |= f.mask


def test_encode_decode_round_trip_with_extremes():
    rng = random.Random(1)
    for instr in isa.INSTRUCTIONS.values():
        for _ in range(50):
            values = {f.name: rng.choice([f.min, f.max, rng.randint(f.min, f.max)])
                      for f in instr.fields}
            decoded_instr, decoded = isa.decode(isa.encode(instr.name, **values))
            assert decoded_instr is instr
            for name, value in values.items():
                assert decoded[name] == value


def test_all_zero_word_is_illegal():
    with pytest.raises(isa.IllegalInstruction, match="opcode 0"):
        isa.decode(0)


def test_reserved_bits_are_illegal():
    word = isa.encode("HALT") | (1 << 100)
    with pytest.raises(isa.IllegalInstruction, match="reserved"):
        isa.decode(word)


def test_encode_rejects_out_of_range_fields():
    with pytest.raises(isa.IllegalInstruction, match="zero_point"):
        isa.encode("CONFIG", zero_point=1 << 15)
    with pytest.raises(isa.IllegalInstruction, match="no field"):
        isa.encode("HALT", rows=1)


def test_program_bytes_are_little_endian():
    words = [isa.encode("LOAD", rows=1, row_elems=2, dram_addr=0x11223344), isa.encode("HALT")]
    data = isa.to_bytes(words)
    assert len(data) == 32 and data[8:12] == bytes([0x44, 0x33, 0x22, 0x11])
    assert isa.from_bytes(data) == words
