/** The soak's worker module: a full GC of the worker's heap, then its size, so memory samples see only live data. */
import { defineModule } from '../common/module-api.js';

export default defineModule({
  tasks: {
    gc: () => {
      (globalThis as { gc?: () => void }).gc?.();
      return process.memoryUsage().heapUsed;
    },
  },
});
