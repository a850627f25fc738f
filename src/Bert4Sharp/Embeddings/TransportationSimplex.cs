namespace Bert4Sharp.Embeddings;

/// <summary>
/// The transportation simplex on a balanced problem whose supplies and demands are all &gt; 0 (the caller removes zero
/// weights). A basis is a spanning tree of the bipartite graph rows ∪ columns with n + m − 1 cells (some may carry 0:
/// degenerate). Nodes 0..n−1 are rows, n..n+m−1 columns.
/// </summary>
sealed class TransportationSimplex
{
    readonly int n, m;
    readonly double[] supply, demand;
    readonly double[,] cost;
    readonly int[] cellRow, cellCol;       // basic cell k = (cellRow[k], cellCol[k]) with flow[k]
    readonly double[] flow;
    readonly int[,] basicIndex;            // [n, m]: k, or −1 when not basic
    readonly List<int>[] adjacent;         // node → its basic cells
    readonly double optimalityTolerance;

    /// <summary>Row potentials u of the current basis (u_0 = 0).</summary>
    public double[] U { get; }

    /// <summary>Column potentials v: u_i + v_j = C_ij on every basic cell.</summary>
    public double[] V { get; }

    public TransportationSimplex(double[] supply, double[] demand, double[,] cost)
    {
        this.supply = supply;
        this.demand = demand;
        this.cost = cost;
        n = supply.Length;
        m = demand.Length;
        int size = n + m - 1;
        cellRow = new int[size];
        cellCol = new int[size];
        flow = new double[size];
        basicIndex = new int[n, m];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
                basicIndex[i, j] = -1;
        adjacent = new List<int>[n + m];
        for (int k = 0; k < n + m; k++) adjacent[k] = [];
        U = new double[n];
        V = new double[m];
        double maxCost = 0;
        foreach (double c in cost) maxCost = Math.Max(maxCost, Math.Abs(c));
        // Reduced costs come from sums of n + m costs along tree paths: allow that much round-off before calling a cell improving.
        optimalityTolerance = 16 * Math.ScaleB(1.0, -52) * maxCost * (n + m);
        LeastCostStart();
    }

    /// <summary>The basic cells that carry mass: (row, column, flow &gt; 0).</summary>
    public IEnumerable<(int Row, int Col, double Flow)> Basis()
    {
        for (int k = 0; k < flow.Length; k++)
            if (flow[k] > 0) yield return (cellRow[k], cellCol[k], flow[k]);
    }

    /// <summary>Pivots to optimality; returns the number of pivots. Leaves <see cref="U"/>, <see cref="V"/> at the optimum.</summary>
    public int Solve(int maxPivots, int degenerateRunBeforeBland)
    {
        int pivots = 0, degenerateRun = 0;
        var parentCell = new int[n + m];
        var queue = new int[n + m];
        var path = new List<int>(n + m);
        while (true)
        {
            ComputePotentials(queue);
            bool bland = degenerateRun >= degenerateRunBeforeBland;
            var (ei, ej) = Entering(bland);
            if (ei < 0) return pivots;
            if (pivots == maxPivots)
                throw new InvalidOperationException($"The transportation simplex did not reach the optimum within {maxPivots} pivots "
                    + $"({n} × {m} problem); raise TransportOptions.MaxPivots or use Sinkhorn.");
            pivots++;

            // The tree path from the entering cell's column to its row: its cells alternate −, +, −, … (odd count).
            TreePath(ei, n + ej, parentCell, queue, path);
            double theta = double.PositiveInfinity;
            int leaving = -1;
            for (int t = 0; t < path.Count; t += 2)
            {
                int k = path[t];
                bool better = flow[k] < theta
                    || (bland && flow[k] == theta && cellRow[k] * m + cellCol[k] < cellRow[leaving] * m + cellCol[leaving]);
                if (better)
                {
                    theta = flow[k];
                    leaving = k;
                }
            }
            for (int t = 0; t < path.Count; t++)
            {
                int k = path[t];
                if (t % 2 == 0) flow[k] -= theta;   // x ≥ θ, so x − θ ≥ 0 exactly in floating point
                else flow[k] += theta;
            }
            degenerateRun = theta > 0 ? 0 : degenerateRun + 1;

            int li = cellRow[leaving], lj = cellCol[leaving];
            basicIndex[li, lj] = -1;
            adjacent[li].Remove(leaving);
            adjacent[n + lj].Remove(leaving);
            SetCell(leaving, ei, ej, theta);
        }
    }

    void SetCell(int k, int i, int j, double x)
    {
        cellRow[k] = i;
        cellCol[k] = j;
        flow[k] = x;
        basicIndex[i, j] = k;
        adjacent[i].Add(k);
        adjacent[n + j].Add(k);
    }

    /// <summary>
    /// Matrix-minimum (least-cost) start: visit the cells in increasing cost (ties by index); each allocation takes
    /// min(remaining supply, remaining demand) and crosses out exactly one line (the row on a tie; the last row and
    /// column serve what remains), the final allocation both. Each cell is the last open one of the line it crosses,
    /// so the n + m − 1 cells are independent: a spanning tree, a tie leaving a 0-flow (degenerate) cell. On text
    /// matching costs it needs far fewer pivots than the north-west corner (91 against 416 on a random 64 × 64 WRD).
    /// </summary>
    void LeastCostStart()
    {
        var order = new int[n * m];
        var keys = new double[n * m];
        for (int k = 0; k < order.Length; k++)
        {
            order[k] = k;
            keys[k] = cost[k / m, k % m];
        }
        Array.Sort(order, (x, y) => keys[x] != keys[y] ? keys[x].CompareTo(keys[y]) : x.CompareTo(y));
        var a = (double[])supply.Clone();
        var b = (double[])demand.Clone();
        var rowDone = new bool[n];
        var colDone = new bool[m];
        int rowsLeft = n, colsLeft = m, next = 0;
        foreach (int cell in order)
        {
            int i = cell / m, j = cell % m;
            if (rowDone[i] || colDone[j]) continue;
            if (rowsLeft == 1 && colsLeft == 1)
            {
                SetCell(next, i, j, Math.Max(b[j], 0));
                return;
            }
            if (colsLeft == 1 || (rowsLeft > 1 && a[i] <= b[j]))
            {
                // Row i is exhausted (the only column left takes all of it).
                SetCell(next++, i, j, Math.Max(a[i], 0));
                b[j] -= a[i];
                rowDone[i] = true;
                rowsLeft--;
            }
            else
            {
                // Column j is satisfied (the only row left serves all of it).
                SetCell(next++, i, j, Math.Max(b[j], 0));
                a[i] -= b[j];
                colDone[j] = true;
                colsLeft--;
            }
        }
        throw new InvalidOperationException("Internal error: the least-cost start did not close every row and column.");
    }

    /// <summary>u_i + v_j = C_ij on the tree, from u_0 = 0 (breadth first).</summary>
    void ComputePotentials(int[] queue)
    {
        var seen = new bool[n + m];
        int head = 0, tail = 0;
        queue[tail++] = 0;
        seen[0] = true;
        U[0] = 0;
        while (head < tail)
        {
            int node = queue[head++];
            foreach (int k in adjacent[node])
            {
                int i = cellRow[k], j = cellCol[k];
                int other = node < n ? n + j : i;
                if (seen[other]) continue;
                seen[other] = true;
                if (node < n) V[j] = cost[i, j] - U[i];
                else U[i] = cost[i, j] - V[j];
                queue[tail++] = other;
            }
        }
        if (tail != n + m) throw new InvalidOperationException("Internal error: the transportation basis is not a spanning tree.");
    }

    /// <summary>The non-basic cell with the most negative reduced cost (Bland: the first negative one), or (−1, −1) at the optimum.</summary>
    (int I, int J) Entering(bool bland)
    {
        double best = -optimalityTolerance;
        (int, int) cell = (-1, -1);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                if (basicIndex[i, j] >= 0) continue;
                double r = cost[i, j] - U[i] - V[j];
                if (r < best)
                {
                    if (bland) return (i, j);
                    best = r;
                    cell = (i, j);
                }
            }
        return cell;
    }

    /// <summary>Fills <paramref name="path"/> with the tree cells from node <paramref name="to"/> back to node <paramref name="from"/>.</summary>
    void TreePath(int from, int to, int[] parentCell, int[] queue, List<int> path)
    {
        Array.Fill(parentCell, -2);
        parentCell[from] = -1;
        int head = 0, tail = 0;
        queue[tail++] = from;
        while (head < tail && parentCell[to] == -2)
        {
            int node = queue[head++];
            foreach (int k in adjacent[node])
            {
                int other = node < n ? n + cellCol[k] : cellRow[k];
                if (parentCell[other] != -2) continue;
                parentCell[other] = k;
                queue[tail++] = other;
            }
        }
        path.Clear();
        for (int node = to; node != from;)
        {
            int k = parentCell[node];
            path.Add(k);
            node = node < n ? n + cellCol[k] : cellRow[k];
        }
    }
}
