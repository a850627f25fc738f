/// <summary>
/// Xiangqi rules, enough to say whether a move in ICCS coordinates (files a–i, ranks 0–9, red at the bottom,
/// e.g. h2e2) is legal: piece movement (palace, river, horse legs, elephant eyes, cannon screens), no capture
/// of one's own pieces, and the mover's general neither in check afterwards nor facing the other general.
/// </summary>
sealed class Xiangqi
{
    // Upper case red, lower case black: K general, A advisor, B elephant, N horse, R chariot, C cannon, P soldier.
    readonly char[,] board = new char[9, 10];
    public bool RedToMove { get; private set; } = true;

    public Xiangqi()
    {
        for (int f = 0; f < 9; f++) for (int r = 0; r < 10; r++) board[f, r] = '.';
        const string back = "RNBAKABNR";
        for (int f = 0; f < 9; f++) { board[f, 0] = back[f]; board[f, 9] = char.ToLowerInvariant(back[f]); }
        board[1, 2] = board[7, 2] = 'C'; board[1, 7] = board[7, 7] = 'c';
        for (int f = 0; f < 9; f += 2) { board[f, 3] = 'P'; board[f, 6] = 'p'; }
    }

    static bool Red(char p) => char.IsUpper(p);
    static bool InPalace(int f, int r, bool red) => f is >= 3 and <= 5 && (red ? r <= 2 : r >= 7);

    public static bool TryParse(string move, out (int F0, int R0, int F1, int R1) m)
    {
        m = default;
        if (move.Length != 4 || move[0] is < 'a' or > 'i' || move[2] is < 'a' or > 'i' || !char.IsAsciiDigit(move[1]) || !char.IsAsciiDigit(move[3])) return false;
        m = (move[0] - 'a', move[1] - '0', move[2] - 'a', move[3] - '0');
        return true;
    }

    /// <summary>Plays the move if it is legal; returns whether it was.</summary>
    public bool Play(string move)
    {
        if (!TryParse(move, out var m) || !Legal(m)) return false;
        board[m.F1, m.R1] = board[m.F0, m.R0];
        board[m.F0, m.R0] = '.';
        RedToMove = !RedToMove;
        return true;
    }

    bool Legal((int F0, int R0, int F1, int R1) m)
    {
        char p = board[m.F0, m.R0];
        if (p == '.' || Red(p) != RedToMove || (m.F0 == m.F1 && m.R0 == m.R1)) return false;
        char target = board[m.F1, m.R1];
        if (target != '.' && Red(target) == RedToMove) return false;
        if (!Reaches(m.F0, m.R0, m.F1, m.R1)) return false;
        board[m.F1, m.R1] = p;                                       // try it
        board[m.F0, m.R0] = '.';
        bool safe = !InCheck(RedToMove);
        board[m.F0, m.R0] = p;
        board[m.F1, m.R1] = target;
        return safe;
    }

    int Between(int f0, int r0, int f1, int r1)
    {
        int n = 0;
        if (f0 == f1) for (int r = Math.Min(r0, r1) + 1; r < Math.Max(r0, r1); r++) n += board[f0, r] != '.' ? 1 : 0;
        else for (int f = Math.Min(f0, f1) + 1; f < Math.Max(f0, f1); f++) n += board[f, r0] != '.' ? 1 : 0;
        return n;
    }

    /// <summary>Whether the piece on (f0, r0) can move to (f1, r1) by its movement rule (ignoring checks).</summary>
    bool Reaches(int f0, int r0, int f1, int r1)
    {
        char p = board[f0, r0];
        bool red = Red(p);
        int df = f1 - f0, dr = r1 - r0, adf = Math.Abs(df), adr = Math.Abs(dr);
        switch (char.ToUpperInvariant(p))
        {
            case 'K': return adf + adr == 1 && InPalace(f1, r1, red);
            case 'A': return adf == 1 && adr == 1 && InPalace(f1, r1, red);
            case 'B': return adf == 2 && adr == 2 && (red ? r1 <= 4 : r1 >= 5) && board[f0 + df / 2, r0 + dr / 2] == '.';
            case 'N':
                if (!((adf == 1 && adr == 2) || (adf == 2 && adr == 1))) return false;
                return adf == 2 ? board[f0 + df / 2, r0] == '.' : board[f0, r0 + dr / 2] == '.';
            case 'R': return (df == 0 || dr == 0) && Between(f0, r0, f1, r1) == 0;
            case 'C':
                if (df != 0 && dr != 0) return false;
                return board[f1, r1] == '.' ? Between(f0, r0, f1, r1) == 0 : Between(f0, r0, f1, r1) == 1;
            case 'P':
                int forward = red ? 1 : -1;
                bool crossed = red ? r0 >= 5 : r0 <= 4;
                return (df == 0 && dr == forward) || (crossed && dr == 0 && adf == 1);
            default: return false;
        }
    }

    bool InCheck(bool red)
    {
        int kf = -1, kr = -1, of = -1, or = -1;
        for (int f = 0; f < 9; f++)
            for (int r = 0; r < 10; r++)
            {
                if (board[f, r] == (red ? 'K' : 'k')) (kf, kr) = (f, r);
                if (board[f, r] == (red ? 'k' : 'K')) (of, or) = (f, r);
            }
        if (kf < 0) return true;
        if (of == kf && Between(kf, kr, of, or) == 0) return true;   // the generals face each other
        for (int f = 0; f < 9; f++)
            for (int r = 0; r < 10; r++)
                if (board[f, r] != '.' && Red(board[f, r]) != red && char.ToUpperInvariant(board[f, r]) != 'K' && Reaches(f, r, kf, kr)) return true;
        return false;
    }
}
